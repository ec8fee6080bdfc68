"""The S3 client backups need: AWS Signature Version 4 (headers and presigned URLs), the object calls, and
multipart uploads (create, parts, complete, abort, list), on http.client with retries.

What is not here: where artifacts go under a bucket and how an artifact is written, read or cleaned up (the
`S3Store` in storage.py). Credentials come from the caller (storage.open_store reads the environment).
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import http.client
import os
import ssl
import time
import urllib.parse
import xml.etree.ElementTree as ET
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import IO

from odoo_operator.api.conditions import parse_rfc3339
from odoo_operator.backupjob.artifacts import ID_FORMAT, BackupError

EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
MIN_PART_SIZE = 5 << 20
DEFAULT_PART_SIZE = 16 << 20
MAX_PARTS = 10_000


@dataclass(frozen=True)
class S3Signer:
    """AWS Signature Version 4 for S3, header and query (presigned URL) forms. Pure."""

    access_key: str
    secret_key: str
    region: str
    session_token: str | None = None

    def __repr__(self) -> str:  # never print the secret
        return f"S3Signer(access_key={self.access_key!r}, region={self.region!r})"

    def _key(self, day: str) -> bytes:
        key = ("AWS4" + self.secret_key).encode()
        for part in (day, self.region, "s3", "aws4_request"):
            key = hmac.new(key, part.encode(), hashlib.sha256).digest()
        return key

    def _signature(self, method: str, path: str, query: Mapping[str, str], headers: Mapping[str, str],
                   payload_hash: str, stamp: str) -> tuple[str, str]:
        canonical_query = _canonical_query(query)
        lowered = {k.lower(): " ".join(str(v).split()) for k, v in headers.items()}
        signed = ";".join(sorted(lowered))
        canonical_headers = "".join(f"{k}:{lowered[k]}\n" for k in sorted(lowered))
        canonical = "\n".join([method, _quote(path, safe="/~"), canonical_query, canonical_headers, signed,
                               payload_hash])
        scope = f"{stamp[:8]}/{self.region}/s3/aws4_request"
        to_sign = "\n".join(["AWS4-HMAC-SHA256", stamp, scope, hashlib.sha256(canonical.encode()).hexdigest()])
        signature = hmac.new(self._key(stamp[:8]), to_sign.encode(), hashlib.sha256).hexdigest()
        return signature, signed

    def sign(self, method: str, host: str, path: str, query: Mapping[str, str], payload_hash: str,
             stamp: str, extra_headers: Mapping[str, str] | None = None) -> dict[str, str]:
        """The headers to send (Host, x-amz-*, Authorization, plus `extra_headers`, all signed)."""
        headers = {"host": host, "x-amz-content-sha256": payload_hash, "x-amz-date": stamp,
                   **{k.lower(): v for k, v in (extra_headers or {}).items()}}
        if self.session_token:
            headers["x-amz-security-token"] = self.session_token
        signature, signed = self._signature(method, path, query, headers, payload_hash, stamp)
        headers["authorization"] = (f"AWS4-HMAC-SHA256 Credential={self.access_key}/{stamp[:8]}/{self.region}/s3/"
                                    f"aws4_request,SignedHeaders={signed},Signature={signature}")
        return headers

    def presign(self, method: str, host: str, path: str, seconds: int, stamp: str) -> str:
        """The query string of a presigned URL (without `?`)."""
        query = {"X-Amz-Algorithm": "AWS4-HMAC-SHA256",
                 "X-Amz-Credential": f"{self.access_key}/{stamp[:8]}/{self.region}/s3/aws4_request",
                 "X-Amz-Date": stamp, "X-Amz-Expires": str(seconds), "X-Amz-SignedHeaders": "host"}
        if self.session_token:
            query["X-Amz-Security-Token"] = self.session_token
        signature, _ = self._signature(method, path, query, {"host": host}, UNSIGNED_PAYLOAD, stamp)
        query["X-Amz-Signature"] = signature
        return _canonical_query(query)


def _quote(text: str, safe: str = "~") -> str:
    return urllib.parse.quote(text, safe=safe)


def _canonical_query(query: Mapping[str, str]) -> str:
    return "&".join(f"{_quote(k)}={_quote(v)}" for k, v in sorted(query.items()))


def _amz_stamp() -> str:
    return datetime.now(UTC).strftime(ID_FORMAT)


def _xml_texts(body: bytes, tag: str) -> list[str]:
    """Texts of every element named `tag`, whatever its namespace."""
    return [el.text or "" for el in ET.fromstring(body).iter() if el.tag.rsplit("}", 1)[-1] == tag]


class S3Client:
    """The handful of S3 calls backups need, on http.client.

    Why not boto3: botocore pins python-dateutil<3 while the kubernetes client this operator depends on
    needs python-dateutil>=3, so the two cannot be installed together.
    """

    RETRIES = 3

    def __init__(self, bucket: str, endpoint: str | None, signer: S3Signer, timeout: float = 60) -> None:
        self.bucket = bucket
        self.signer = signer
        self.timeout = timeout
        if endpoint:  # MinIO, Ceph, moto …: path-style addressing
            url = urllib.parse.urlsplit(endpoint if "://" in endpoint else f"https://{endpoint}")
            self.scheme, self.host, self.base = url.scheme, url.netloc, url.path.rstrip("/") + f"/{bucket}"
        else:
            self.scheme, self.host, self.base = "https", f"{bucket}.s3.{signer.region}.amazonaws.com", ""

    def url(self, key: str) -> str:
        return f"{self.scheme}://{self.host}{_quote(self._path(key), safe='/~')}"

    def _path(self, key: str) -> str:
        return f"{self.base}/{key}"

    def _connection(self) -> http.client.HTTPConnection:
        if self.scheme == "http":
            return http.client.HTTPConnection(self.host, timeout=self.timeout)
        context = ssl.create_default_context(cafile=os.environ.get("AWS_CA_BUNDLE") or None)
        return http.client.HTTPSConnection(self.host, timeout=self.timeout, context=context)

    def _send(self, method: str, key: str, query: Mapping[str, str], body: bytes,
              headers: Mapping[str, str] | None = None) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
        path = self._path(key)
        signed = self.signer.sign(method, self.host, path, query, hashlib.sha256(body).hexdigest(), _amz_stamp(),
                                  headers)
        target = _quote(path, safe="/~") + (f"?{_canonical_query(query)}" if query else "")
        conn = self._connection()
        try:
            conn.request(method, target, body=body if body or method in ("PUT", "POST") else None, headers=signed)
            return conn, conn.getresponse()
        except BaseException:
            conn.close()
            raise

    def request(self, method: str, key: str, query: Mapping[str, str] | None = None, body: bytes = b"",
                headers: Mapping[str, str] | None = None, ok: Sequence[int] = (200, 204)) -> tuple[int, bytes,
                                                                                                 dict[str, str]]:
        """One call, retried on network errors and 5xx; raises BackupError for any other answer not in `ok`."""
        for attempt in range(1, self.RETRIES + 1):
            try:
                conn, response = self._send(method, key, query or {}, body, headers)
                with contextlib.closing(conn):
                    data = response.read()
                    answer = response.status, data, {k.lower(): v for k, v in response.getheaders()}
            except (OSError, http.client.HTTPException) as exc:
                if attempt == self.RETRIES:
                    raise BackupError(f"S3 {method} s3://{self.bucket}/{key} failed: {exc}") from None
                time.sleep(0.5 * 2 ** attempt)
                continue
            status = answer[0]
            if status >= 500 and attempt < self.RETRIES:
                time.sleep(0.5 * 2 ** attempt)
                continue
            if status not in ok:
                raise BackupError(f"S3 {method} s3://{self.bucket}/{key}: HTTP {status} {_s3_error(data)}")
            return answer
        raise AssertionError("unreachable")

    @contextlib.contextmanager
    def stream(self, key: str) -> Iterator[IO[bytes]]:
        conn, response = self._send("GET", key, {}, b"")
        with contextlib.closing(conn):
            if response.status != 200:
                raise BackupError(f"S3 GET s3://{self.bucket}/{key}: HTTP {response.status} "
                                  f"{_s3_error(response.read())}")
            yield response

    def put(self, key: str, body: bytes, content_type: str = "application/octet-stream") -> None:
        self.request("PUT", key, body=body, headers={"content-type": content_type})

    def get(self, key: str) -> bytes:
        return self.request("GET", key)[1]

    def head_size(self, key: str) -> int | None:
        status, _, headers = self.request("HEAD", key, ok=(200, 404))
        return int(headers["content-length"]) if status == 200 else None

    def delete(self, key: str) -> None:
        self.request("DELETE", key, ok=(200, 204, 404))

    def list_keys(self, prefix: str) -> Iterator[str]:
        token: str | None = None
        while True:
            query = {"list-type": "2", "prefix": prefix}
            if token:
                query["continuation-token"] = token
            body = self.request("GET", "", query)[1]
            yield from _xml_texts(body, "Key")
            tokens = _xml_texts(body, "NextContinuationToken")
            if _xml_texts(body, "IsTruncated") != ["true"] or not tokens:
                return
            token = tokens[0]

    def create_multipart(self, key: str) -> str:
        body = self.request("POST", key, {"uploads": ""}, headers={"content-type": "application/octet-stream"})[1]
        return _xml_texts(body, "UploadId")[0]

    def upload_part(self, key: str, upload_id: str, number: int, data: bytes) -> str:
        headers = self.request("PUT", key, {"partNumber": str(number), "uploadId": upload_id}, body=data)[2]
        return headers["etag"]

    def complete_multipart(self, key: str, upload_id: str, etags: Sequence[str]) -> None:
        parts = "".join(f"<Part><PartNumber>{n}</PartNumber><ETag>{etag}</ETag></Part>"
                        for n, etag in enumerate(etags, start=1))
        body = f"<CompleteMultipartUpload>{parts}</CompleteMultipartUpload>".encode()
        answer = self.request("POST", key, {"uploadId": upload_id}, body=body)[1]
        if _xml_texts(answer, "Error") or _xml_texts(answer, "Code"):  # S3 may answer 200 with an error body
            raise BackupError(f"S3 completing the upload of s3://{self.bucket}/{key} failed: {_s3_error(answer)}")

    def abort_multipart(self, key: str, upload_id: str) -> None:
        self.request("DELETE", key, {"uploadId": upload_id}, ok=(200, 204, 404))

    def list_multipart(self, prefix: str) -> list[tuple[str, str, datetime | None]]:
        """(key, upload id, when it was initiated) of the uploads in progress under `prefix`."""
        body = self.request("GET", "", {"uploads": "", "prefix": prefix})[1]
        root = ET.fromstring(body)
        uploads = []
        for el in root.iter():
            if el.tag.rsplit("}", 1)[-1] == "Upload":
                fields = {child.tag.rsplit("}", 1)[-1]: child.text or "" for child in el}
                uploads.append((fields.get("Key", ""), fields.get("UploadId", ""), _s3_time(fields.get("Initiated"))))
        return uploads

    def last_part_time(self, key: str, upload_id: str) -> datetime | None:
        """When the newest part of an upload in progress was uploaded (None: no part yet)."""
        body = self.request("GET", key, {"uploadId": upload_id}, ok=(200, 404))[1]
        times = [t for t in map(_s3_time, _xml_texts(body, "LastModified")) if t is not None] if body else []
        return max(times) if times else None

    def presign_get(self, key: str, seconds: int) -> str:
        query = self.signer.presign("GET", self.host, self._path(key), seconds, _amz_stamp())
        return f"{self.url(key)}?{query}"


def _s3_time(text: str | None) -> datetime | None:
    try:
        return parse_rfc3339(text) if text else None
    except ValueError:
        return None


def _s3_error(body: bytes) -> str:
    try:
        code, message = _xml_texts(body, "Code"), _xml_texts(body, "Message")
    except ET.ParseError:
        return body[:200].decode(errors="replace")
    return ": ".join(filter(None, [code[0] if code else "", message[0] if message else ""]))
