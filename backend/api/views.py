"""HTTP views of API v1: each validates, calls one service, and serializes."""

from __future__ import annotations

from django.conf import settings
from django.http import HttpResponse
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from backend import e2e
from backend.api.prefer import DECLINED_RETRY_AFTER, granted_wait, requested_wait
from backend.api.serializers import JobSerializer, JobSubmitSerializer
from backend.api.throttling import (
    BlockedClientThrottle,
    InFlightThrottle,
    SubmitRateThrottle,
    api_client,
    counting_rejections,
)
from backend.catalogue import CATALOGUE
from backend.ephemeral import store
from backend.ephemeral.records import JobRecord
from backend.jobs import services

PREFER = OpenApiParameter(
    "Prefer", str, OpenApiParameter.HEADER, description="wait=N (N <= 60): wait for the job to end"
)


def job_response(
    record: JobRecord, *, status_code: int, wait: int = 0, declined: bool = False
) -> Response:
    """The job body; with ``wait``, the wait it had; ``declined``: asked, not granted."""
    token = store.reveal_token(record) if record.status == "succeeded" else None
    response = Response(
        JobSerializer(record, context={"token": token}).data,
        status=status_code,
        headers={"Cache-Control": "no-store", "Location": f"/api/v1/jobs/{record.id}"},
    )
    if wait:
        response["Preference-Applied"] = f"wait={wait}"
    elif declined and not record.terminal:
        response["Retry-After"] = str(DECLINED_RETRY_AFTER)
    return response


class JobCreateView(APIView):
    throttle_classes = [BlockedClientThrottle, SubmitRateThrottle, InFlightThrottle]

    @extend_schema(
        request={"multipart/form-data": JobSubmitSerializer},
        parameters=[PREFER],
        responses={201: JobSerializer, 202: JobSerializer},
        summary="Submit a photo to a task",
    )
    def post(self, request: Request) -> Response:
        with counting_rejections(request) as verdict:
            form = JobSubmitSerializer(data=request.data)
            form.is_valid(raise_exception=True)
            reference = form.validated_data.get("reference")
            record = services.job_submit(
                client=api_client(request),
                task=form.validated_data["task"],
                params_text=form.validated_data.get("params"),
                image=form.validated_data["image"].read(),
                reference=None if reference is None else reference.read(),
                consent=form.validated_data.get("consent"),
                webhook=form.validated_data.get("webhook"),
            )
            verdict.checked = not record.e2e
        asked = requested_wait(request)
        with granted_wait(asked) as wait:
            if wait:
                record = services.job_get(
                    client=api_client(request), job_id=record.id, wait=wait, known=record
                )
        code = status.HTTP_201_CREATED if record.terminal else status.HTTP_202_ACCEPTED
        return job_response(record, status_code=code, wait=wait, declined=asked > wait)


class JobDetailView(APIView):
    @extend_schema(parameters=[PREFER], responses={200: JobSerializer}, summary="Poll a job")
    def get(self, request: Request, job_id: str) -> Response:
        asked = requested_wait(request)
        with granted_wait(asked) as wait:
            record = services.job_get(client=api_client(request), job_id=job_id, wait=wait)
        return job_response(
            record, status_code=status.HTTP_200_OK, wait=wait, declined=asked > wait
        )

    @extend_schema(
        responses={204: None},
        summary="Delete everything about a job now",
        description=(
            "Purges the upload, the result and its token. A queued or running job ends "
            "`cancelled`; a job that had ended keeps its status, without a result."
        ),
    )
    def delete(self, request: Request, job_id: str) -> Response:
        services.job_delete(client=api_client(request), job_id=job_id)
        return Response(status=status.HTTP_204_NO_CONTENT)


class ResultView(APIView):
    # Django answers HEAD with GET, and GET takes the result: a link preview,
    # a download manager or `curl -I` would have spent the one download.
    http_method_names = ["get", "options"]

    @extend_schema(
        responses={200: OpenApiResponse(description="the result bytes")},
        summary="Download a result, once",
    )
    def get(self, request: Request, token: str) -> HttpResponse:
        download = services.result_take(client=api_client(request), token=token)
        response = HttpResponse(download.data, content_type=download.content_type)
        response["Cache-Control"] = "no-store"
        response["Content-Disposition"] = "attachment"
        return response


class TaskCatalogueView(APIView):
    @extend_schema(summary="The tasks on offer, their params and limits")
    def get(self, request: Request) -> Response:
        tasks = [
            {
                "name": spec.name,
                "description": spec.description,
                "params_schema": spec.params_schema,
                "output": "application/json" if spec.output == "json" else "image",
                "accepted_formats": list(spec.accepted_formats),
                "inputs": list(spec.inputs),
                "consent_required": spec.biometric,
                "max_bytes": settings.EPHEMERA_MAX_UPLOAD_BYTES,
                "max_pixels": settings.EPHEMERA_MAX_PIXELS,
                "max_side": settings.EPHEMERA_MAX_SIDE,
            }
            for spec in CATALOGUE.values()
        ]
        return Response({"tasks": tasks})


class KeysView(APIView):
    @extend_schema(summary="The workers' public keys for end-to-end encrypted jobs")
    def get(self, request: Request) -> Response:
        return Response(e2e.published())
