"""The read-only HTTP API over the published marts (``citylake serve``).

What it serves is exactly what ``published/CURRENT.json`` points to (or, with ``as_of``, what it
pointed to then): a mart never visible to analysts is never visible here either. There is no
write endpoint and no SQL from the caller: filters are parsed, column names checked against the
mart's schema and values bound as typed parameters.

Access is by bearer token. The register (``CITYLAKE_API_TOKENS_FILE``) holds sha256 hashes only,
with a role per token:

- ``analyst``: every mart, every row;
- ``operator`` (with an operator id of ``ingestion/operators.yaml``): rows of marts that carry an
  ``operator`` column are filtered to its own; marts without one are visible only to the
  operators whose feeds build them (transit and fleet marts to the bus operator); shared
  reference tables (the calendar) to everyone.

Errors are JSON ``{"error": {"status", "code", "message"}}``, never a stack trace.
"""

import datetime as dt
import decimal
import enum
import hashlib
import hmac
import json
import logging
import math
import os
import secrets
import threading
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import duckdb
from fastapi import Depends, FastAPI, Query, Request
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, Field, StringConstraints
from starlette.exceptions import HTTPException as StarletteHTTPException

from citylake.build.groups import group_marts, load_manifest
from citylake.core import duck
from citylake.core.errors import CitylakeError
from citylake.core.settings import Settings
from citylake.core.storage import LakeStorage, open_storage
from ingestion import registry

log = logging.getLogger("citylake.consumers.api")

ROLES = ("analyst", "operator")
#: Reference tables with nothing of any operator in them.
PUBLIC_MARTS = frozenset({"dim_calendar"})
MAX_LIMIT = 5000
EXPLORE = Path(__file__).parent / "explore"
FILTER_OPS = {
    "eq": "=",
    "ne": "<>",
    "lt": "<",
    "le": "<=",
    "gt": ">",
    "ge": ">=",
    "in": "in",
    "like": "like",
    "null": "is null",
    "notnull": "is not null",
}
FILTER_PATTERN = r"^[a-z_][a-z0-9_]*:(" + "|".join(FILTER_OPS) + r")(:.*)?$"
ORDER_PATTERN = r"^-?[a-z_][a-z0-9_]*(,-?[a-z_][a-z0-9_]*)*$"
FilterText = Annotated[str, StringConstraints(max_length=1000, pattern=FILTER_PATTERN)]


# ---------------------------------------------------------------------------------------------
# Tokens


@dataclass(frozen=True)
class Principal:
    name: str
    role: str
    operator: str | None = None


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


#: A token lives this many days unless ``--expires`` says otherwise; an entry written before
#: tokens had an expiry expires this long after it was created.
TOKEN_DAYS = 365


def _expiry(entry: dict) -> dt.datetime:
    if entry.get("expires_at"):
        return dt.datetime.fromisoformat(entry["expires_at"])
    return dt.datetime.fromisoformat(entry["created_at"]) + dt.timedelta(days=TOKEN_DAYS)


class TokenRegister:
    """The token register: a JSON file of ``{name, role, operator, sha256, created_at, expires_at}``."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)

    def entries(self) -> list[dict]:
        if not self.path.exists():
            return []
        try:
            return json.loads(self.path.read_text(encoding="utf-8"))["tokens"]
        except (ValueError, KeyError, TypeError) as exc:
            raise CitylakeError(f"{self.path}: not a citylake token register ({exc})") from None

    def _write(self, entries: list[dict]) -> None:
        """Write the register through a new temporary file of a random name, created exclusively
        and never through a link (a file or link planted at a guessable name is refused, not
        followed), then renamed over the register."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.{secrets.token_hex(8)}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump({"tokens": entries}, fh, indent=2)
            os.replace(tmp, self.path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    def add(self, name: str, role: str, operator: str | None = None, expires_days: int = TOKEN_DAYS) -> str:
        """Create a token and return it: only its hash is stored, it cannot be shown again. It
        expires after ``expires_days`` days (rotate it before)."""
        if expires_days < 1:
            raise CitylakeError("--expires takes a number of days, at least 1")
        if role not in ROLES:
            raise CitylakeError(f"unknown role {role!r}: use one of {', '.join(ROLES)}")
        if role == "operator":
            if operator not in registry.operators():
                raise CitylakeError(f"an operator token needs --operator, one of {', '.join(registry.operators())}")
        elif operator:
            raise CitylakeError("--operator is only for operator tokens")
        entries = self.entries()
        if any(e["name"] == name for e in entries):
            raise CitylakeError(f"a token named {name!r} exists already (revoke it first)")
        token = "clk_" + secrets.token_urlsafe(32)
        now = dt.datetime.now(dt.UTC).replace(microsecond=0)
        entries.append(
            {
                "name": name,
                "role": role,
                "operator": operator,
                "sha256": _hash(token),
                "created_at": now.isoformat(),
                "expires_at": (now + dt.timedelta(days=expires_days)).isoformat(),
            }
        )
        self._write(entries)
        return token

    def rotate(self, name: str, expires_days: int = TOKEN_DAYS) -> str:
        """Replace a token by a new one of the same role and operator; the old one stops working."""
        entries = self.entries()
        old = next((e for e in entries if e["name"] == name), None)
        if old is None:
            raise CitylakeError(f"no token named {name!r}")
        self._write([e for e in entries if e["name"] != name])
        return self.add(name, old["role"], old.get("operator"), expires_days)

    def revoke(self, name: str) -> None:
        entries = self.entries()
        kept = [e for e in entries if e["name"] != name]
        if len(kept) == len(entries):
            raise CitylakeError(f"no token named {name!r}")
        self._write(kept)

    def authenticate(self, token: str) -> Principal | None:
        digest = _hash(token)
        found = None
        for e in self.entries():  # compare every entry, in constant time each
            if hmac.compare_digest(digest, e["sha256"]):
                found = e
        if found is None or _expiry(found) <= dt.datetime.now(dt.UTC):  # an expired token is no token
            return None
        return Principal(found["name"], found["role"], found.get("operator"))


# ---------------------------------------------------------------------------------------------
# Published marts


@dataclass(frozen=True)
class Mart:
    name: str
    group: str
    publication_id: str
    published_at: str | None
    columns: tuple[tuple[str, str], ...]  # (name, duckdb type)

    @property
    def types(self) -> dict[str, str]:
        return dict(self.columns)


class Publication:
    """A DuckDB database of views over one pointer's marts; requests use cursors of it."""

    def __init__(self, settings: Settings, storage: LakeStorage, pointer: dict) -> None:
        from citylake.publish.reader import published_views

        self.con = duck.connect(settings, storage)
        published_views(self.con, storage, pointer)
        duck.load_extension(self.con, "spatial")  # geometry answered as GeoJSON
        self.marts: dict[str, Mart] = {}
        for group, entry in sorted(pointer.get("groups", {}).items()):
            for name in sorted(entry.get("marts", {})):
                cols = tuple((c, t) for c, t, *_ in self.con.execute(f"describe {name}").fetchall())
                self.marts[name] = Mart(name, group, entry["publication_id"], entry.get("published_at"), cols)

    def cursor(self) -> duckdb.DuckDBPyConnection:
        return self.con.cursor()


class PublishedMarts:
    """The pointer in force, re-read on every request; one ``Publication`` kept per pointer."""

    def __init__(self, settings: Settings, storage: LakeStorage, keep: int = 4) -> None:
        self.settings, self.storage, self.keep = settings, storage, keep
        self._cache: OrderedDict[str, Publication] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, as_of: str | None = None) -> Publication:
        from citylake.publish.reader import pointer_as_of

        try:
            pointer = pointer_as_of(self.storage, as_of)
        except CitylakeError as exc:
            raise ApiError(404, "publication_not_found", str(exc)) from None
        cache_key = json.dumps(pointer.get("groups", {}), sort_keys=True)
        with self._lock:
            if cache_key in self._cache:
                self._cache.move_to_end(cache_key)
                return self._cache[cache_key]
            publication = Publication(self.settings, self.storage, pointer)
            self._cache[cache_key] = publication
            while len(self._cache) > self.keep:
                self._cache.popitem(last=False)[1].con.close()
            return publication


def column_docs(manifest: dict) -> dict[str, dict]:
    """Mart and column descriptions from dbt's manifest (the same text as the dbt docs site)."""
    docs: dict[str, dict] = {}
    for node in manifest["nodes"].values():
        if node["resource_type"] == "model":
            docs[node["name"]] = {
                "description": (node.get("description") or "").strip(),
                "columns": {c: (v.get("description") or "").strip() for c, v in (node.get("columns") or {}).items()},
            }
    return docs


# ---------------------------------------------------------------------------------------------
# Access rules


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def owners_of(group: str, operators: dict[str, dict]) -> set[str]:
    """Return who owns a group's marts that have no ``operator`` column: the one operator that
    delivers the group's feeds; nobody when several do (their rows could not be told apart)."""
    delivering = [op for op in registry.operators_of_group(group) if op in operators]
    return set(delivering) if len(delivering) == 1 else set()


#: Marts whose cells count people: for a principal who is not the city's analyst, a row whose
#: gate count is below k shows none of its counts (the open-data rule, citylake.consumers.opendata).
SMALL_COUNTS = {"mart_od_matrix": ("journeys_inferred", ("journeys_inferred", "journeys_estimated", "mean_stages"))}


def source_of(principal: Principal, mart: Mart, k: int) -> str:
    """The relation a principal's query reads: the mart, or the mart with small cells blanked."""
    rule = SMALL_COUNTS.get(mart.name)
    if principal.role == "analyst" or rule is None:
        return mart.name
    gate, counts = rule
    blanked = ", ".join(
        f'case when "{gate}" < {int(k)} then null else "{c}" end as "{c}"' for c in counts if c in mart.types
    )
    return f"(select * replace ({blanked}) from {mart.name}) as {mart.name}"


def row_scope(principal: Principal, mart: Mart, operators: dict[str, dict]) -> tuple[str, list[Any]] | None:
    """Return the (SQL condition, params) the principal's rows of this mart are limited to,
    ``("", [])`` for all rows, or None when the mart is not theirs at all."""
    if principal.role == "analyst" or mart.name in PUBLIC_MARTS:
        return "", []
    if "operator" in mart.types:
        return '"operator" = ?', [principal.operator]
    if principal.operator in owners_of(mart.group, operators):
        return "", []
    return None


# ---------------------------------------------------------------------------------------------
# Responses


class ErrorDetail(BaseModel):
    status: int
    code: str
    message: str


class ErrorBody(BaseModel):
    error: ErrorDetail


class ColumnInfo(BaseModel):
    name: str
    type: str
    description: str = ""


#: How long a signed link to the docs of the marts stays valid.
DOCS_LINK_MINUTES = 15


class DocsLink(BaseModel):
    url: str = Field(description="a path to open in a browser (the server's own host before it)")
    expires_at: dt.datetime


class MartInfo(BaseModel):
    name: str
    group: str
    publication_id: str
    published_at: str | None
    description: str = ""
    row_scope: Literal["all rows", "own operator's rows"]
    columns: list[ColumnInfo]


class MartList(BaseModel):
    marts: list[MartInfo]


class RowsPage(BaseModel):
    mart: str
    publication_id: str
    total: int = Field(description="rows matching the filters (within the caller's scope)")
    limit: int
    offset: int
    next_offset: int | None = Field(description="offset of the next page, null on the last one")
    next_page: str | None = Field(
        default=None,
        description="the next page's path and query, pinned to this page's publication (as_of): pages "
        "never mix two publications, even when a night publishes in between; null on the last page",
    )
    columns: list[str]
    rows: list[dict[str, Any]]


class GroupInForce(BaseModel):
    group: str
    publication_id: str
    published_at: str | None
    marts: list[str]


class PublicationInForce(BaseModel):
    groups: list[GroupInForce]


class CarParkAvailability(BaseModel):
    operator: str
    facility_id: str
    facility_name: str | None
    capacity: int | None
    observed_date: str = Field(description="service date of the last usable hour published")
    observed_hour: int = Field(description="local hour (Europe/Paris) of that reading")
    occupancy_rate: float | None = Field(description="mean occupancy over that hour, 0..1")
    places_available: int | None = Field(description="capacity × (1 − occupancy rate), rounded")
    lat: float | None = None
    lon: float | None = None


class ParkingAvailability(BaseModel):
    publication_id: str
    note: str
    car_parks: list[CarParkAvailability]


class LoadProfileStop(BaseModel):
    stop_sequence: int
    stop_id: str
    stop_name: str | None
    mean_boardings: float | None
    mean_alightings: float | None
    mean_load: float | None
    p90_load: float | None
    mean_capacity: float | None
    load_factor: float | None
    trips_observed: int | None


class LoadProfile(BaseModel):
    month: dt.date = Field(description="the month the profile's trips ran in (first day)")
    feed_version: str = Field(description="the network version in force for those trips")
    direction_id: int | None
    day_type: str | None
    time_band: str | None
    stops: list[LoadProfileStop]


class LineLoadProfile(BaseModel):
    route_short_name: str
    publication_id: str
    profiles: list[LoadProfile]


def _json_value(v: Any) -> Any:
    if isinstance(v, float):
        return v if math.isfinite(v) else None
    if isinstance(v, decimal.Decimal):
        return float(v) if v.is_finite() else None
    if isinstance(v, (dt.datetime, dt.date, dt.time)):
        return v.isoformat()
    if isinstance(v, dt.timedelta):
        return v.total_seconds()
    if isinstance(v, (bytes, bytearray)):
        return v.hex()
    if isinstance(v, uuid.UUID):
        return str(v)
    if isinstance(v, list):
        return [_json_value(x) for x in v]
    if isinstance(v, dict):
        return {str(k): _json_value(x) for k, x in v.items()}
    return v


def _records(cur: duckdb.DuckDBPyConnection, geojson: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    names = [d[0] for d in cur.description]

    def value(name: str, v: Any) -> Any:
        return json.loads(v) if name in geojson and v is not None else _json_value(v)

    return [{n: value(n, v) for n, v in zip(names, row, strict=True)} for row in cur.fetchall()]


def _error(status: int, code: str, message: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse(
        {"error": {"status": status, "code": code, "message": message}}, status_code=status, headers=headers
    )


ERRORS = {
    s: {"model": ErrorBody, "description": d}
    for s, d in (
        (400, "bad filter, order or paging"),
        (401, "missing or unknown token"),
        (403, "the token's role may not read this"),
        (404, "no such mart, line or publication"),
        (422, "malformed parameters"),
    )
}


# ---------------------------------------------------------------------------------------------
# Filters


def parse_filters(mart: Mart, filters: list[str]) -> tuple[list[str], list[Any]]:
    """``column:op:value`` → SQL conditions with typed parameters (the value cast to the column's type)."""
    conds: list[str] = []
    params: list[Any] = []
    types = mart.types
    for raw in filters:
        parts = raw.split(":", 2)
        if len(parts) < 2:
            raise ApiError(
                400, "bad_filter", f"filter {raw!r}: expected column:op:value (op one of {', '.join(FILTER_OPS)})"
            )
        column, op = parts[0], parts[1]
        value = parts[2] if len(parts) == 3 else None
        if column not in types:
            raise ApiError(400, "bad_filter", f"filter {raw!r}: {mart.name} has no column {column!r}")
        if op not in FILTER_OPS:
            raise ApiError(400, "bad_filter", f"filter {raw!r}: unknown op {op!r} (one of {', '.join(FILTER_OPS)})")
        col, ctype = f'"{column}"', types[column]
        if op in ("null", "notnull"):
            conds.append(f"{col} {FILTER_OPS[op]}")
            continue
        if value is None:
            raise ApiError(400, "bad_filter", f"filter {raw!r}: op {op!r} needs a value (column:{op}:value)")
        if "\x00" in value:
            raise ApiError(400, "bad_filter", f"filter {raw!r}: NUL character in value")
        if op == "like":
            conds.append(f"cast({col} as varchar) like ?")
            params.append(value)
        elif op == "in":
            values = value.split("|")
            conds.append(f"{col} in ({', '.join(f'cast(? as {ctype})' for _ in values)})")
            params.extend(values)
        else:
            conds.append(f"{col} {FILTER_OPS[op]} cast(? as {ctype})")
            params.append(value)
    return conds, params


def parse_order(mart: Mart, order_by: str | None) -> str:
    if not order_by:
        return ", ".join(f'"{c}"' for c, _ in mart.columns)
    out = []
    for item in order_by.split(","):
        desc = item.startswith("-")
        column = item[1:] if desc else item
        if column not in mart.types:
            raise ApiError(400, "bad_order", f"order_by {order_by!r}: {mart.name} has no column {column!r}")
        out.append(f'"{column}"' + (" desc" if desc else ""))
    # then every column, so pages never overlap or skip rows
    out += [f'"{c}"' for c, _ in mart.columns]
    return ", ".join(out)


# ---------------------------------------------------------------------------------------------
# The application


#: The docs page runs its own inlined script and fetches nothing: the browser is told so.
DOCS_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
        "img-src data:; font-src data:; connect-src 'none'; base-uri 'none'; form-action 'none'; "
        "frame-ancestors 'none'"
    ),
    "Cache-Control": "no-cache",
    "X-Content-Type-Options": "nosniff",
}


#: Every other answer: JSON fetches nothing and is framed by no page.
API_CSP = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
#: Swagger UI and ReDoc, served from the fastapi-offline package (never a CDN): their own files,
#: the inline start-up script FastAPI writes, ReDoc's worker.
OPENAPI_PAGES_CSP = (
    "default-src 'none'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; font-src 'self' data:; connect-src 'self'; worker-src blob:; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)
OFFLINE_DOCS = "/static-offline-docs"


def create_app(
    settings: Settings | None = None, storage: LakeStorage | None = None, tokens: TokenRegister | None = None
) -> FastAPI:
    settings = settings or Settings()
    storage = storage or open_storage(settings)
    tokens = tokens or TokenRegister(settings.api_tokens_file)
    published = PublishedMarts(settings, storage)
    operators = registry.operators()
    manifest = load_manifest(settings)
    docs = column_docs(manifest)
    by_group = group_marts(manifest)
    #: Every mart the gate can publish (a name outside it is refused before any lookup).
    MartNames = enum.Enum("MartNames", {m: m for g in registry.groups() for m in by_group[g]}, type=str)
    bearer = HTTPBearer(auto_error=False, description="a citylake API token (`citylake api-token add`)")

    from fastapi_offline import FastAPIOffline

    app = FastAPIOffline(
        static_url=OFFLINE_DOCS,
        title="citylake — API de consultation des données publiées",
        version="1",
        description=(
            "Read-only access to the marts citylake has published (what `published/CURRENT.json` "
            "points to). Bearer tokens per role: analysts read everything; an operator reads its "
            "own rows. Filters: `filter=column:op:value`, op in "
            + ", ".join(f"`{o}`" for o in FILTER_OPS)
            + " (`in` takes `a|b|c`)."
        ),
        responses=ERRORS,
    )

    @app.middleware("http")
    async def _security_headers(request: Request, call_next):
        """A strict CSP and no framing on every answer; an answer to an authorised request is never
        stored by a browser or a proxy (it may hold an operator's rows)."""
        response = await call_next(request)
        path = request.url.path
        pages = path in (app.docs_url, app.redoc_url, "/docs", "/redoc") or path.startswith(OFFLINE_DOCS)
        if "content-security-policy" not in response.headers:
            response.headers["Content-Security-Policy"] = OPENAPI_PAGES_CSP if pages else API_CSP
        response.headers["X-Frame-Options"] = "DENY"
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        if request.headers.get("authorization"):
            response.headers["Cache-Control"] = "no-store"
        return response

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return _error(exc.status, exc.code, exc.message)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        codes = {401: "unauthorized", 403: "forbidden", 404: "not_found", 405: "method_not_allowed"}
        return _error(
            exc.status_code,
            codes.get(exc.status_code, "http_error"),
            str(exc.detail),
            headers=getattr(exc, "headers", None),
        )

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        parts = []
        for err in exc.errors():
            where = ".".join(str(x) for x in err.get("loc", ()) if x not in ("query", "path"))
            parts.append(f"{where}: {err.get('msg')}")
        return _error(422, "invalid_parameters", "; ".join(parts) or "invalid parameters")

    @app.exception_handler(Exception)
    async def _internal(request: Request, exc: Exception) -> JSONResponse:
        ref = uuid.uuid4().hex[:12]
        log.exception("API error %s on %s %s", ref, request.method, request.url.path)
        return _error(500, "internal_error", f"internal error (reference {ref}, logged on the server)")

    def principal(creds: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> Principal:
        if creds is None or not creds.credentials:
            raise StarletteHTTPException(
                401,
                "a bearer token is required (Authorization: Bearer <token>)",
                headers={"WWW-Authenticate": "Bearer"},
            )
        who = tokens.authenticate(creds.credentials)
        if who is None:
            raise StarletteHTTPException(401, "unknown or revoked token", headers={"WWW-Authenticate": "Bearer"})
        return who

    Who = Annotated[Principal, Depends(principal)]
    AsOf = Annotated[
        str | None,
        Query(max_length=64, description="a publication id or a date YYYY-MM-DD: read what was published then"),
    ]

    def visible(pub: Publication, who: Principal, name: str) -> tuple[Mart, str, list[Any]]:
        mart = pub.marts.get(name)
        if mart is None:
            raise ApiError(404, "mart_not_found", f"no published mart {name!r} (GET /v1/marts lists them)")
        scope = row_scope(who, mart, operators)
        if scope is None:
            raise ApiError(
                403,
                "forbidden",
                f"token {who.name!r} (operator {who.operator}) may not read {name}: "
                "it is built from another operator's data",
            )
        return mart, *scope

    def info(mart: Mart, who: Principal) -> MartInfo:
        d = docs.get(mart.name, {})
        scoped = who.role == "operator" and "operator" in mart.types and mart.name not in PUBLIC_MARTS
        return MartInfo(
            name=mart.name,
            group=mart.group,
            publication_id=mart.publication_id,
            published_at=mart.published_at,
            description=d.get("description", ""),
            row_scope="own operator's rows" if scoped else "all rows",
            columns=[ColumnInfo(name=c, type=t, description=d.get("columns", {}).get(c, "")) for c, t in mart.columns],
        )

    link_key = secrets.token_bytes(32)  # signs this server's docs links; a restart voids them

    def link_signature(as_of: str, expires: int) -> str:
        return hmac.new(link_key, f"{as_of}\n{expires}".encode(), hashlib.sha256).hexdigest()

    @app.get("/v1/docs/link", response_model=DocsLink, summary="A short-lived link to the docs of the marts")
    def docs_link(who: Who, as_of: AsOf = None) -> DocsLink:
        """A browser cannot send a bearer token: this answers a link to ``/docs/marts`` (the
        publication in force, or ``as_of``) signed for DOCS_LINK_MINUTES, to open in a browser."""
        expires = int(dt.datetime.now(dt.UTC).timestamp()) + DOCS_LINK_MINUTES * 60
        query = {"expires": str(expires), "signature": link_signature(as_of or "", expires)}
        if as_of:
            query["as_of"] = as_of
        from urllib.parse import urlencode

        return DocsLink(url=f"/docs/marts?{urlencode(query)}", expires_at=dt.datetime.fromtimestamp(expires, dt.UTC))

    @app.get("/docs/marts", response_class=HTMLResponse, include_in_schema=False)
    def docs_site(
        creds: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
        as_of: AsOf = None,
        expires: Annotated[int | None, Query()] = None,
        signature: Annotated[str | None, Query(max_length=64)] = None,
    ) -> HTMLResponse:
        """The documentation of the marts (dbt's docs site) of the publication in force, or as of
        an id or date: for a bearer token, or through a signed link (``/v1/docs/link``). It holds
        descriptions, columns, SQL and lineage, never a row; it costs one or two registry reads
        whatever the registry's size."""
        from citylake.publish.docs_site import site_for
        from citylake.publish.reader import pointer_as_of

        signed = (
            expires is not None
            and signature is not None
            and expires > dt.datetime.now(dt.UTC).timestamp()
            and hmac.compare_digest(signature, link_signature(as_of or "", expires))
        )
        if not signed:
            principal(creds)  # a bearer token, or 401
        try:
            pointer = pointer_as_of(storage, as_of)
        except CitylakeError as exc:
            raise ApiError(404, "publication_not_found", str(exc)) from None
        page = site_for(storage, pointer)
        if page is None:
            raise ApiError(
                404,
                "docs_not_found",
                "no docs page is kept for this publication: none was written, or `citylake vacuum` deleted it "
                "(CITYLAKE_DOCS_RETENTION_DAYS)",
            )
        return HTMLResponse(storage.get_bytes(page), headers=DOCS_HEADERS)

    @app.get("/explore", response_class=HTMLResponse, include_in_schema=False)
    def explore_page() -> HTMLResponse:
        """The network explorer (issue #34): a static page with no data; its script reads the API
        with the user's token and draws with MapLibre GL JS served from this server."""
        return HTMLResponse((EXPLORE / "index.html").read_bytes(), headers=explore_headers())

    @app.get("/explore/config.json", include_in_schema=False)
    def explore_config() -> JSONResponse:
        return JSONResponse({"basemap_style": settings.basemap_style}, headers=explore_headers())

    @app.get("/explore/{folder}/{name}", include_in_schema=False)
    def explore_file(folder: str, name: str) -> Response:
        """The explorer's own script and style, and the vendored MapLibre files (make install)."""
        from citylake.consumers.vendor import PIN, vendor_file

        files = {
            ("static", "explore.js"): EXPLORE / "explore.js",
            ("static", "explore.css"): EXPLORE / "explore.css",
        }
        if folder == "vendor" and name in {Path(f).name for f in PIN["files"]}:
            try:
                path = vendor_file(name)
            except CitylakeError as exc:
                raise ApiError(503, "vendor_missing", str(exc)) from None
        elif (folder, name) in files:
            path = files[(folder, name)]
        else:
            raise ApiError(404, "not_found", f"/explore/{folder}/{name}")
        kind = {".js": "text/javascript", ".css": "text/css", ".txt": "text/plain"}[path.suffix]
        return Response(path.read_bytes(), media_type=f"{kind}; charset=utf-8", headers=explore_headers())

    def explore_headers() -> dict[str, str]:
        """The explorer fetches from this server alone, and from the basemap's server when one is set."""
        outside = " https:" if settings.basemap_style else ""
        return {
            "Content-Security-Policy": (
                f"default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
                f"img-src 'self' data: blob:{outside}; connect-src 'self'{outside}; font-src 'self'{outside}; "
                "worker-src blob:; child-src blob:; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
            ),
            "Cache-Control": "no-cache",
        }

    @app.get("/v1/publication", response_model=PublicationInForce, summary="What is published now")
    def publication(who: Who, as_of: AsOf = None) -> PublicationInForce:
        pub = published.get(as_of)
        groups: dict[str, GroupInForce] = {}
        for m in pub.marts.values():
            g = groups.setdefault(
                m.group,
                GroupInForce(group=m.group, publication_id=m.publication_id, published_at=m.published_at, marts=[]),
            )
            g.marts.append(m.name)
        return PublicationInForce(groups=list(groups.values()))

    @app.get("/v1/marts", response_model=MartList, summary="The marts this token may read")
    def list_marts(who: Who, as_of: AsOf = None) -> MartList:
        pub = published.get(as_of)
        return MartList(marts=[info(m, who) for m in pub.marts.values() if row_scope(who, m, operators) is not None])

    MartName = Annotated[MartNames, PathParam(description="a mart name (GET /v1/marts lists those published)")]

    @app.get("/v1/marts/{mart}", response_model=MartInfo, summary="One mart: columns and documentation")
    def get_mart(mart: MartName, who: Who, as_of: AsOf = None) -> MartInfo:
        m, _, _ = visible(published.get(as_of), who, mart.value)
        return info(m, who)

    @app.get("/v1/marts/{mart}/rows", response_model=RowsPage, summary="Rows of a mart, filtered and paged")
    def rows(
        request: Request,
        mart: MartName,
        who: Who,
        filter: Annotated[
            list[FilterText] | None, Query(max_length=50, description="column:op:value, repeatable (AND)")
        ] = None,  # noqa: A002
        order_by: Annotated[
            str | None,
            Query(max_length=500, pattern=ORDER_PATTERN, description="columns, comma-separated; -col for descending"),
        ] = None,
        limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 100,
        offset: Annotated[int, Query(ge=0, le=10**9)] = 0,
        as_of: AsOf = None,
    ) -> RowsPage:
        pub = published.get(as_of)
        m, scope_sql, scope_params = visible(pub, who, mart.value)
        conds, params = parse_filters(m, filter or [])
        if scope_sql:
            conds.append(scope_sql)
            params += scope_params
        where = (" where " + " and ".join(conds)) if conds else ""
        cur = pub.cursor()
        source = source_of(who, m, settings.opendata_k)
        try:
            total = cur.execute(f"select count(*) from {source}{where}", params).fetchone()[0]
            # a mart's geometry (WKB in the lake) is answered as a GeoJSON geometry object
            geo = tuple(c for c, _ in m.columns if c == "geometry")
            columns = "* replace (st_asgeojson(st_geomfromwkb(geometry)) as geometry)" if geo else "*"
            cur.execute(
                f"select {columns} from {source}{where} order by {parse_order(m, order_by)} "
                f"limit {limit} offset {offset}",
                params,
            )
            records = _records(cur, geo)
        except (duckdb.ConversionException, duckdb.InvalidInputException, duckdb.BinderException) as exc:
            raise ApiError(
                400, "bad_filter", f"cannot apply the filters to {m.name}: {str(exc).splitlines()[0]}"
            ) from None
        finally:
            cur.close()
        nxt = offset + len(records)
        next_page = None
        if nxt < total:
            pinned = request.url.include_query_params(offset=nxt, as_of=m.publication_id)
            next_page = f"{pinned.path}?{pinned.query}"
        return RowsPage(
            mart=m.name,
            publication_id=m.publication_id,
            total=total,
            limit=limit,
            offset=offset,
            next_offset=nxt if nxt < total else None,
            next_page=next_page,
            columns=[c for c, _ in m.columns],
            rows=records,
        )

    @app.get(
        "/v1/parking/availability",
        response_model=ParkingAvailability,
        summary="Places available per car park, at the last published hour",
    )
    def parking_availability(who: Who) -> ParkingAvailability:
        pub = published.get()
        m, scope_sql, params = visible(pub, who, "mart_parking_occupancy_hourly")
        where = "where readings_usable > 0" + (f" and {scope_sql}" if scope_sql else "")
        has_dim = "dim_car_parks" in pub.marts
        geo = (
            "left join (select operator, facility_id, any_value(lat order by as_of_date desc) as lat, "
            "any_value(lon order by as_of_date desc) as lon from dim_car_parks group by all) d using (operator, "
            "facility_id)"
            if has_dim
            else ""
        )
        sql = f"""
            with last as (
                select *, row_number() over (partition by operator, facility_id
                                             order by service_date desc, local_hour desc) as rn
                from {m.name} {where}
            )
            select l.operator, l.facility_id, l.facility_name, l.capacity, l.service_date as observed_date,
                   l.local_hour as observed_hour, l.mean_occupancy_rate as occupancy_rate,
                   round(l.capacity * (1 - least(greatest(l.mean_occupancy_rate, 0), 1)))::integer as places_available,
                   {"d.lat, d.lon" if has_dim else "null::double as lat, null::double as lon"}
            from last l {geo}
            where rn = 1
            order by l.operator, l.facility_id"""
        cur = pub.cursor()
        try:
            records = _records(cur.execute(sql, params))
        finally:
            cur.close()
        return ParkingAvailability(
            publication_id=m.publication_id,
            note="citylake publishes nightly: this is the last usable hour of the published data, not a live count.",
            car_parks=[CarParkAvailability(**r) for r in records],
        )

    @app.get(
        "/v1/lines/{route_short_name}/load-profile",
        response_model=LineLoadProfile,
        summary="Serpent de charge of a line: mean load stop by stop, for one month",
    )
    def load_profile(
        route_short_name: Annotated[str, PathParam(max_length=64)],
        who: Who,
        month: Annotated[
            dt.date | None, Query(description="any day of the month wanted; default: the line's latest month")
        ] = None,
        direction_id: Annotated[int | None, Query(ge=0, le=1)] = None,
        day_type: Annotated[str | None, Query(max_length=64)] = None,
        time_band: Annotated[str | None, Query(max_length=64)] = None,
    ) -> LineLoadProfile:
        pub = published.get()
        m, scope_sql, params = visible(pub, who, "mart_bus_load_profile")
        conds, values = ["route_short_name = ?"], [route_short_name]
        if month is not None:
            conds.append("month = date_trunc('month', ?::date)")
            values.append(month)
        else:
            conds.append(f"month = (select max(month) from {m.name} where route_short_name = ?)")
            values.append(route_short_name)
        for column, value in (("direction_id", direction_id), ("day_type", day_type), ("time_band", time_band)):
            if value is not None:
                conds.append(f"{column} = ?")
                values.append(value)
        if scope_sql:
            conds.append(scope_sql)
            values += params
        cur = pub.cursor()
        try:
            records = _records(
                cur.execute(
                    f"select * from {m.name} where {' and '.join(conds)} "
                    "order by feed_version, direction_id, day_type, time_band, stop_sequence",
                    values,
                )
            )
            if not records:
                known = cur.execute(
                    f"select count(*) from {m.name} where route_short_name = ?", [route_short_name]
                ).fetchone()[0]
        finally:
            cur.close()
        if not records:
            if not known:
                raise ApiError(404, "line_not_found", f"no load profile published for line {route_short_name!r}")
            raise ApiError(
                404,
                "profile_not_found",
                f"line {route_short_name!r} has no profile for this month/direction/day_type/time_band",
            )
        profiles: dict[tuple, LoadProfile] = {}
        for r in records:
            k = (r["month"], r["feed_version"], r["direction_id"], r["day_type"], r["time_band"])
            p = profiles.setdefault(
                k,
                LoadProfile(month=k[0], feed_version=k[1], direction_id=k[2], day_type=k[3], time_band=k[4], stops=[]),
            )
            p.stops.append(LoadProfileStop(**{f: r.get(f) for f in LoadProfileStop.model_fields}))
        return LineLoadProfile(
            route_short_name=route_short_name, publication_id=m.publication_id, profiles=list(profiles.values())
        )

    return app


def write_openapi(path: Path, app: FastAPI | None = None) -> Path:
    """Write the OpenAPI document (published with the docs, and next to each publication)."""
    app = app or create_app()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(app.openapi(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return path
