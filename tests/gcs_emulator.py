"""A local Google Cloud Storage server for the tests: ``gcp-storage-emulator``, in memory.

    python tests/gcs_emulator.py --port PORT --bucket BUCKET

serves the GCS JSON API on ``http://localhost:PORT`` with one empty bucket until killed.
Clients are pointed at it with the standard variables (:func:`client_env`):
``STORAGE_EMULATOR_HOST`` (gcsfs, google-cloud-storage), ``TENSORSTORE_GCS_HTTP_URL``
(TensorStore, which writes Orbax's arrays), anonymous credentials for gcsfs
(``FSSPEC_GCS_TOKEN=anon``) and a fixed token for TensorStore
(``GOOGLE_AUTH_TOKEN_FOR_TESTING``, so it neither searches for credentials nor probes the
GCE metadata server). ``GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT=false`` keeps gcsfs from asking
the gRPC storage-control API, which the emulator does not serve, for each bucket's layout
(a 60 s timeout per bucket otherwise).

One completion of the emulator: real GCS answers an object download with its generation
in the ``x-goog-generation`` header (and ``x-goog-metageneration``); the emulator sends
neither. TensorStore reads the generation of a download from that header, so without it
every re-read object has generation 0, and the next conditional write of that object
(Orbax's OCDBT manifest) fails with ``Malformed StorageGeneration``. :func:`serve` adds
the two headers, taken from the emulator's own object record. The other: real GCS refuses
an upload whose ``ifGenerationMatch`` differs from the object's generation (0: the object
must not exist) with ``412 Precondition Failed``; the emulator ignores the parameter, so
:func:`serve` checks it before the upload (create-only writes such as the workdir lock).
And the emulator does not serve the ``moveTo`` call (an object renamed in one request),
which gcsfs tries first, retrying for about 30 s before it copies and deletes instead;
:func:`serve` answers it with that copy and delete.
"""

from __future__ import annotations

import argparse
import re
import socket
from collections.abc import Callable
from typing import Any

BUCKET = "bucket"


def free_port() -> int:
    """A TCP port on localhost that was free a moment ago."""
    with socket.socket() as probe:
        probe.bind(("localhost", 0))
        return probe.getsockname()[1]


def client_env(port: int) -> dict[str, str]:
    """Environment variables pointing gcsfs, google-cloud-storage and TensorStore at the
    emulator on ``port`` (module docstring)."""
    url = f"http://localhost:{port}"
    return {
        "STORAGE_EMULATOR_HOST": url,
        "TENSORSTORE_GCS_HTTP_URL": url,
        "FSSPEC_GCS_TOKEN": "anon",
        "GOOGLE_AUTH_TOKEN_FOR_TESTING": "emulator",
        "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false",
    }


def _with_generation_headers(download: Callable[..., Any]) -> Callable[..., Any]:
    """The emulator's download handler, also sending the object's generation headers."""
    from gcp_storage_emulator.exceptions import NotFound

    def handler(request: Any, response: Any, storage: Any, *args: Any, **kwargs: Any) -> Any:
        result = download(request, response, storage, *args, **kwargs)
        try:
            record = storage.get_file_obj(
                request.params["bucket_name"], request.params["object_id"]
            )
        except NotFound:
            return result
        response["x-goog-generation"] = str(record["generation"])
        response["x-goog-metageneration"] = str(record["metageneration"])
        return result

    return handler


def _with_upload_preconditions(insert: Callable[..., Any]) -> Callable[..., Any]:
    """The emulator's upload handler, refusing an upload whose ``ifGenerationMatch`` is not
    the object's current generation (0 when it does not exist) with 412, as GCS does."""
    from http import HTTPStatus

    from gcp_storage_emulator.exceptions import NotFound

    def handler(request: Any, response: Any, storage: Any, *args: Any, **kwargs: Any) -> Any:
        wanted = request.query.get("ifGenerationMatch")
        if wanted:
            name = (request.query.get("name") or [None])[0]
            if name is None and isinstance(request.data, dict):
                name = (request.data.get("meta") or {}).get("name")
            try:
                record = storage.get_file_obj(request.params["bucket_name"], name)
                generation = int(record["generation"])
            except NotFound:
                generation = 0
            if int(wanted[0]) != generation:
                response.status = HTTPStatus.PRECONDITION_FAILED
                response.json({"error": {"code": 412, "message": "Precondition Failed"}})
                return None
        return insert(request, response, storage, *args, **kwargs)

    return handler


def _move(request: Any, response: Any, storage: Any, *args: Any, **kwargs: Any) -> None:
    """``POST …/b/{bucket}/o/{object}/moveTo/o/{destination}``: the object renamed."""
    from http import HTTPStatus

    from gcp_storage_emulator.exceptions import NotFound
    from gcp_storage_emulator.handlers import objects

    params = request.params
    try:
        moved = objects._copy(
            request.base_url,
            storage,
            params["bucket_name"],
            params["object_id"],
            params["bucket_name"],
            params["dest_object_id"],
        )
    except NotFound:
        response.status = HTTPStatus.NOT_FOUND
        return
    objects._delete(storage, params["bucket_name"], params["object_id"])
    response.json(moved)


def _replace_handler(server: Any, original: Callable[..., Any], patched: Callable[..., Any]):
    for _, handlers in server.HANDLERS:
        for method, handler in list(handlers.items()):
            if handler is original:
                handlers[method] = patched


def serve(port: int, bucket: str = BUCKET) -> None:
    """Runs the in-memory emulator on ``localhost:port`` with ``bucket`` until killed."""
    from gcp_storage_emulator import server
    from gcp_storage_emulator.handlers import objects

    original = objects.download
    patched = _with_generation_headers(original)
    objects.download = patched  # objects.get (``?alt=media``) calls it by this name
    _replace_handler(server, original, patched)
    _replace_handler(server, objects.insert, _with_upload_preconditions(objects.insert))
    from gcp_storage_emulator import settings

    move_routes = tuple(
        (
            rf"^{re.escape(prefix)}/b/(?P<bucket_name>[-.\w]+)/o/(?P<object_id>.*[^/]+)"
            r"/moveTo/o/(?P<dest_object_id>.*[^/]+)$",
            {"POST": _move},
        )
        for prefix in (settings.API_ENDPOINT, "")
    )
    server.HANDLERS = (*move_routes, *server.HANDLERS)
    server.create_server("localhost", port, in_memory=True, default_bucket=bucket).run()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--bucket", default=BUCKET)
    arguments = parser.parse_args()
    serve(arguments.port, arguments.bucket)
