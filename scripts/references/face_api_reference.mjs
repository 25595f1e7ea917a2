// Reference descriptor of dlib's ResNet from face-api's own TF.js code (the original runtime).
//
// Run by hand, in a throwaway folder (TF.js is not a product dependency: the
// worker runs the weights in torch, workers/models/face_embed.py):
//
//   mkdir /tmp/tfjsref && cd /tmp/tfjsref && npm init -y
//   npm install --ignore-scripts @tensorflow/tfjs@4.22.0 \
//       @tensorflow/tfjs-backend-wasm@4.22.0 @tensorflow/tfjs-backend-webgl@4.22.0
//   npm pack @vladmandic/face-api@1.7.15 && tar xzf vladmandic-face-api-1.7.15.tgz
//   # face-api's no-bundle ESM build imports tfjs by dist paths that Node's
//   # ESM loader cannot resolve; point them at the packages instead:
//   sed 's#"@tensorflow/\([a-z-]*\)/dist/index.js"#"@tensorflow/\1"#g' \
//       package/dist/face-api.esm-nobundle.js > faceapi.mjs
//   cp <repo>/scripts/references/face_api_reference.mjs .
//   node face_api_reference.mjs <model_dir> <repo>/tests/workers/models/data
//
// It reads face_embed_input.rgb (a 150x150x3 RGB uint8 aligned face, written
// by the test data script in the same folder) and writes
// face_embed_reference.json: the 128 numbers that tf.io.decodeWeights (TF.js's
// own dequantization) and face-api's FaceRecognitionNet (CPU backend) answer.
import * as tf from '@tensorflow/tfjs';
import fs from 'fs';
import * as faceapi from './faceapi.mjs';

const [modelDir, dataDir] = process.argv.slice(2);
await tf.setBackend('cpu');
await tf.ready();
const manifest = JSON.parse(fs.readFileSync(`${modelDir}/face_recognition_model-weights_manifest.json`));
const bin = fs.readFileSync(`${modelDir}/face_recognition_model.bin`);
const weights = tf.io.decodeWeights(bin.buffer.slice(bin.byteOffset, bin.byteOffset + bin.length), manifest[0].weights);
const net = new faceapi.FaceRecognitionNet();
net.loadFromWeightMap(weights);
const rgb = fs.readFileSync(`${dataDir}/face_embed_input.rgb`);
const input = tf.tensor3d(new Int32Array(rgb), [150, 150, 3], 'int32');
const descriptor = await net.computeFaceDescriptor(input);
fs.writeFileSync(`${dataDir}/face_embed_reference.json`, JSON.stringify({
  runtime: `tfjs ${tf.version.tfjs} cpu, @vladmandic/face-api 1.7.15`,
  descriptor: Array.from(descriptor),
}));
console.log('face_embed_reference.json written');
