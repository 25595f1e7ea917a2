"""An upload handler that keeps every upload in memory and stops at the byte limit.

Django's default handlers spill files over 2.5 MB to a temporary file; a photo
must never touch a disk, so this handler replaces them. It refuses a declared
``Content-Length`` over the limit before reading the body, and stops reading a
body (chunked or lying about its length) as soon as it passes the limit.
"""

from __future__ import annotations

from io import BytesIO
from typing import Any

from django.conf import settings
from django.core.files.uploadedfile import InMemoryUploadedFile
from django.core.files.uploadhandler import FileUploadHandler

from backend.api.errors import ApiError

#: Room for the multipart framing and the small form fields around the file.
MULTIPART_OVERHEAD = 64 * 1024


def payload_too_large() -> ApiError:
    limit_mib = settings.EPHEMERA_MAX_UPLOAD_BYTES / (1024 * 1024)
    return ApiError(413, "payload_too_large", f"The upload is over the {limit_mib:g} MiB limit.")


class MemoryOnlyUploadHandler(FileUploadHandler):
    def __init__(self, request: Any = None) -> None:
        super().__init__(request)
        self.file: BytesIO | None = None
        self.received = 0

    def handle_raw_input(
        self,
        input_data: Any,
        META: dict[str, Any],  # noqa: N803 (Django's signature)
        content_length: int,
        boundary: str,
        encoding: str | None = None,
    ) -> None:
        if content_length > settings.EPHEMERA_MAX_UPLOAD_BYTES + MULTIPART_OVERHEAD:
            raise payload_too_large()

    def new_file(self, *args: Any, **kwargs: Any) -> None:
        super().new_file(*args, **kwargs)
        self.file = BytesIO()

    def receive_data_chunk(self, raw_data: bytes, start: int) -> None:
        self.received += len(raw_data)
        if self.received > settings.EPHEMERA_MAX_UPLOAD_BYTES:
            raise payload_too_large()
        assert self.file is not None
        self.file.write(raw_data)

    def file_complete(self, file_size: int) -> InMemoryUploadedFile:
        assert self.file is not None
        self.file.seek(0)
        return InMemoryUploadedFile(
            file=self.file,
            field_name=self.field_name,
            name=self.file_name,
            content_type=self.content_type,
            size=file_size,
            charset=self.charset,
            content_type_extra=self.content_type_extra,
        )
