"""The records API and exports: thin views over selectors, streams and the export service."""
from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from django.conf import settings
from django.db import transaction
from django.http import FileResponse, HttpResponse, StreamingHttpResponse
from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.renderers import JSONRenderer

from fieldsync import parsing
from fieldsync.api_views import ERROR, ProtocolView
from fieldsync.errors import ApiError, invalid
from fieldsync.responses import json_response

from ..models import Export
from ..services.access_log import access_log_records
from ..services.exports import export_download, export_request
from .auth import ANALYSIS_AUTHENTICATION, CanReadRecords
from .export_files import FILE_ONLY_FORMATS, MEDIA_TYPES, STREAMED_FORMATS
from .filters import FILTER_PARAMS, RECORD_TYPES, RecordFilter, record_filter_parse
from .geopackages import GPKG_TYPE
from .renderers import (
    GEOJSON_TYPE,
    CSVRenderer,
    FirstRendererNegotiation,
    GeoJSONRenderer,
    record_fragment,
    stream_body,
)
from .selectors import RecordQuery, read_basis, records_query
from .streams import ReadLog, RecordStream
from .workbooks import XLSX_TYPE

# json pages; geojson and csv streams; xlsx and gpkg files, which a read always turns into
# a background export (202), as it turns a large or `async` stream into one.
FORMATS = ("json", *STREAMED_FORMATS, *FILE_ONLY_FORMATS)
# Parameters that are not filters.
CONTROL = {"format", "limit", "after", "async"}


class AnalysisView(ProtocolView):
    authentication_classes = ANALYSIS_AUTHENTICATION
    permission_classes = [CanReadRecords]
    renderer_classes = [JSONRenderer, GeoJSONRenderer, CSVRenderer]
    # The format is the `format` parameter, read by the view; errors are always JSON.
    content_negotiation_class = FirstRendererNegotiation


def request_params(request) -> dict[str, Any]:
    """Query parameters, and for POST the body's too (JSON object or form): polygons too
    long for a URL are POSTed."""
    params: dict[str, Any] = {k: request.query_params.getlist(k) for k in request.query_params}
    params = {k: v[0] if len(v) == 1 else v for k, v in params.items()}
    if request.method == "POST":
        body = request.data
        if not hasattr(body, "items"):
            raise ApiError("invalid", "Send a JSON object or a form.")
        for key, value in body.items():
            params[key] = value
    return params


def read_page(query: RecordQuery, *, shape: str, limit: int, after, log: ReadLog) -> tuple[list[tuple], bool]:
    """One page of rows ("feature" or "record" shape), and whether more follow. The rows
    and their s.62 row (naming the records returned with personal fields open) are one
    transaction, committed before the caller returns anything."""
    with transaction.atomic():
        rows = list(query.rows(shape=shape, after=after, limit=limit + 1))
        more = len(rows) > limit
        rows = rows[:limit]
        flags_at = len(rows[0]) - len(query.personal) if rows else 0
        personal_ids = [row[0] for row in rows if any(row[flags_at:])] if query.personal else []
        if personal_ids:
            # The fields open in the records returned (a stream names those that may be).
            fields = [name for j, name in enumerate(query.personal) if any(row[flags_at + j] for row in rows)]
            access_log_records(user=query.user, action=log.action, record_type=query.record_type,
                               record_ids=personal_ids, recipient=log.recipient, purpose=log.purpose,
                               details={**log.details, "fields": fields})
    return rows, more


def read_log(request, query: RecordQuery, *, action: str, view: str, recipient: str = "",
             extra: dict | None = None) -> ReadLog:
    purpose, details = read_basis(request.user, query)
    details |= {"view": view, "filter": query.filter.describe(), **(extra or {})}
    return ReadLog(action, recipient=recipient, purpose=purpose, details=details)


def stream_response(query: RecordQuery, fmt: str, log: ReadLog) -> StreamingHttpResponse:
    """GeoJSON or CSV, streamed; the disclosure row is committed before this returns."""
    stream = RecordStream(query, log=log).open()
    response = StreamingHttpResponse(
        _Body(stream_body(fmt, query, stream), stream),
        content_type=MEDIA_TYPES[fmt],
    )
    extension = "csv" if fmt == "csv" else "geojson"
    response["Content-Disposition"] = f'attachment; filename="{query.record_type}.{extension}"'
    response["Cache-Control"] = "no-store"
    response["X-Accel-Buffering"] = "no"  # nginx: pass the stream on as it comes
    if stream.log_entry_id is not None:
        response["X-Access-Log-Entry"] = str(stream.log_entry_id)
    return response


class _Body:
    """The response body: Django closes it when the response is done (or abandoned)."""

    def __init__(self, pieces, stream: RecordStream):
        self.pieces, self.stream = pieces, stream

    def __iter__(self):
        return iter(self.pieces)

    def close(self) -> None:
        close = getattr(self.pieces, "close", None)
        if close:
            close()
        self.stream.close()


def export_accepted(request, export: Export) -> HttpResponse:
    url = request.build_absolute_uri(reverse("analysis-export", args=[export.pk]))
    return json_response(export_view(request, export), status=202, headers={"Location": url})


def export_view(request, export: Export) -> dict[str, Any]:
    data = {
        "id": str(export.pk),
        "status": export.status,
        "type": export.record_type,
        "format": export.format,
        "filter": export.query,
        "created_at": export.created_at,
        "finished_at": export.finished_at,
        "expires_at": export.expires_at,
        "row_count": export.row_count,
        "size_bytes": export.size_bytes,
        "error": export.error,
        "url": request.build_absolute_uri(reverse("analysis-export", args=[export.pk])),
    }
    if export.status == Export.Status.READY:
        data["file"] = request.build_absolute_uri(reverse("analysis-export-file", args=[export.pk]))
    return data


FILTER_PARAMETERS = [
    OpenApiParameter("format", str, enum=list(FORMATS),
                     description="json (paged), geojson or csv (streamed), xlsx or gpkg (a background export: 202)"),
    OpenApiParameter("from", OpenApiTypes.DATETIME, description="on or after (observed_at / started_at)"),
    OpenApiParameter("to", OpenApiTypes.DATETIME, description="before"),
    *(OpenApiParameter(name, str, description="comma-separated codes") for name in
      ("qualifier", "incident_type", "issue_type", "grade", "review_state")),
    OpenApiParameter("area", str, description="comma-separated area ids"),
    OpenApiParameter("organisation", str, description="comma-separated organisation ids or slugs"),
    OpenApiParameter("bbox", str, description="minlon,minlat,maxlon,maxlat (WGS84)"),
    OpenApiParameter("polygon", str, description="Polygon/MultiPolygon, WKT or GeoJSON (WGS84); POST if long"),
    OpenApiParameter("include_rejected", bool),
    OpenApiParameter("limit", int, description="json: records per page"),
    OpenApiParameter("after", OpenApiTypes.UUID, description="json: the last id of the previous page"),
    OpenApiParameter("async", bool, description="geojson/csv: build in the background (202); xlsx/gpkg always are"),
]


# The path's record type: a closed set (any other answers 404).
RECORD_TYPE_PATH = OpenApiParameter("record_type", str, OpenApiParameter.PATH, enum=list(RECORD_TYPES))
# The same filters as a JSON body (POST), for polygons too long for a URL.
FILTER_BODY = {
    "format": serializers.ChoiceField(FORMATS, required=False),
    "from": serializers.DateTimeField(required=False), "to": serializers.DateTimeField(required=False),
    **{name: serializers.CharField(required=False, help_text="comma-separated codes") for name in
       ("qualifier", "incident_type", "issue_type", "grade", "review_state")},
    "area": serializers.CharField(required=False), "organisation": serializers.CharField(required=False),
    "bbox": serializers.CharField(required=False),
    "polygon": serializers.JSONField(required=False, help_text="WKT text or a GeoJSON Polygon/MultiPolygon object"),
    "include_rejected": serializers.BooleanField(required=False),
    "limit": serializers.IntegerField(required=False), "after": serializers.UUIDField(required=False),
    "async": serializers.BooleanField(required=False),
}
RECORDS_PAGE = inline_serializer("RecordsPage", {
    "type": serializers.CharField(), "count": serializers.IntegerField(),
    "next": serializers.URLField(allow_null=True), "results": serializers.ListField(child=serializers.DictField()),
})
FEATURE_COLLECTION = inline_serializer("RecordFeatureCollection", {
    "type": serializers.ChoiceField(["FeatureCollection"]),
    "features": serializers.ListField(child=serializers.DictField()),
})
FEATURE = inline_serializer("RecordFeature", {
    "type": serializers.ChoiceField(["Feature"]), "id": serializers.UUIDField(),
    "geometry": serializers.DictField(allow_null=True), "properties": serializers.DictField(),
})
EXPORT = inline_serializer("Export", {
    "id": serializers.UUIDField(), "status": serializers.ChoiceField(Export.Status.values),
    "type": serializers.CharField(), "format": serializers.ChoiceField(Export.Format.values),
    "filter": serializers.DictField(), "created_at": serializers.DateTimeField(),
    "finished_at": serializers.DateTimeField(allow_null=True), "expires_at": serializers.DateTimeField(allow_null=True),
    "row_count": serializers.IntegerField(allow_null=True), "size_bytes": serializers.IntegerField(allow_null=True),
    "error": serializers.CharField(allow_blank=True), "url": serializers.URLField(),
    "file": serializers.URLField(required=False, help_text="when ready"),
})
# A read: a JSON page, or a GeoJSON/CSV stream; too large (or async) becomes an export
# (202, Location: the export), and 503 when the export queue is down.
READ_RESPONSES = {
    (200, "application/json"): RECORDS_PAGE, (200, GEOJSON_TYPE): FEATURE_COLLECTION,
    (200, "text/csv"): OpenApiTypes.STR, (202, "application/json"): EXPORT, 503: ERROR,
}


class RecordsView(AnalysisView):
    """GET (or POST, for long polygons) /api/v1/records/<type>: filtered records as a paged
    JSON list, or `format=geojson|csv` streamed; large or `async=true` reads become an
    export (202)."""

    @extend_schema(operation_id="records_list", parameters=[RECORD_TYPE_PATH, *FILTER_PARAMETERS],
                   responses=READ_RESPONSES,
                   summary="Field records for analysis (filtered, redacted, logged)")
    def get(self, request, record_type: str):
        return self.read(request, record_type, request_params(request))

    @extend_schema(operation_id="records_search", parameters=[RECORD_TYPE_PATH],
                   request=inline_serializer("RecordSearch", FILTER_BODY), responses=READ_RESPONSES,
                   summary="The same, with the filters (e.g. a long polygon) in the body")
    def post(self, request, record_type: str):
        return self.read(request, record_type, request_params(request))

    def read(self, request, record_type: str, params: dict[str, Any]):
        fmt = str(params.get("format") or "json")
        if fmt not in FORMATS:
            raise invalid("format", "not_in_choices", ", ".join(FORMATS))
        filters = {k: v for k, v in params.items() if k not in CONTROL}
        flt = record_filter_parse(record_type, filters)
        if fmt == "json":
            return self.page(request, flt, params)
        if fmt in FILE_ONLY_FORMATS:
            return export_accepted(request, export_request(user=request.user, record_type=record_type, fmt=fmt,
                                                           params=flt.as_params()))
        wants_async = str(params.get("async", "")).lower() in {"1", "true", "yes"}
        query = records_query(request.user, record_type, flt)
        if wants_async or query.count_up_to(settings.ANALYSIS_STREAM_MAX_ROWS + 1) > settings.ANALYSIS_STREAM_MAX_ROWS:
            return export_accepted(request, export_request(user=request.user, record_type=record_type, fmt=fmt,
                                                           params=flt.as_params()))
        log = read_log(request, query, action="disclosure", view=f"api.records.{fmt}",
                       recipient=request.user.get_username())
        return stream_response(query, fmt, log)

    def page(self, request, flt: RecordFilter, params: dict[str, Any]):
        limit = parsing.page_limit(params.get("limit"), default=settings.ANALYSIS_PAGE_DEFAULT,
                                   maximum=settings.ANALYSIS_PAGE_MAX)
        after = parsing.uuid_value("after", params.get("after"))
        query = records_query(request.user, flt.record_type, flt)
        log = read_log(request, query, action="consultation", view="api.records.list")
        rows, more = read_page(query, shape="record", limit=limit, after=after, log=log)
        next_url = None
        if more:
            next_params = {**flt.as_params(), "limit": str(limit), "after": str(rows[-1][0])}
            next_url = _url(request, reverse("analysis-records", args=[flt.record_type]), next_params)
        return json_response({"type": flt.record_type, "count": len(rows), "next": next_url,
                              "results": [record_fragment(row) for row in rows]})


class RecordDetailView(AnalysisView):
    @extend_schema(operation_id="records_retrieve",
                   parameters=[RECORD_TYPE_PATH, OpenApiParameter("format", str, enum=["json", "geojson"])],
                   responses={(200, "application/json"): OpenApiTypes.OBJECT, (200, GEOJSON_TYPE): FEATURE},
                   summary="One field record (redacted, logged)")
    def get(self, request, record_type: str, record_id):
        if record_type not in RECORD_TYPES:
            raise ApiError("not_found", "No such record type.", status_code=404)
        query = records_query(request.user, record_type, RecordFilter(record_type=record_type, include_rejected=True))
        query.base = query.base.filter(pk=record_id)
        log = read_log(request, query, action="consultation", view="api.records.detail")
        geojson = request.query_params.get("format") == "geojson"
        rows, _ = read_page(query, shape="feature" if geojson else "record", limit=1, after=None, log=log)
        if not rows:
            raise ApiError("not_found", "No such record, or not yours to see.", status_code=404)
        return HttpResponse(rows[0][1].encode(), content_type=GEOJSON_TYPE if geojson else "application/json")


class ExportsView(AnalysisView):
    """POST {"type", "format", …filters} → 202 and the export's status; GET: your exports."""

    renderer_classes = [JSONRenderer]

    # Named "Export" like the answer, so it is the component ExportRequest (COMPONENT_SPLIT_REQUEST)
    # and their `format` enums share one name, ExportFormatEnum.
    @extend_schema(operation_id="exports_create", request=inline_serializer("Export", {
        "type": serializers.ChoiceField(RECORD_TYPES), "format": serializers.ChoiceField(Export.Format.values,
                                                                                       required=False),
        **{name: field for name, field in FILTER_BODY.items() if name in FILTER_PARAMS},
    }), responses={(202, "application/json"): EXPORT, 503: ERROR},
                   summary="Request a background export")
    def post(self, request):
        params = request_params(request)
        record_type = str(params.pop("type", "") or params.pop("record_type", ""))
        fmt = str(params.pop("format", "") or "geojson")
        if record_type not in RECORD_TYPES:
            raise invalid("type", "not_in_choices", f"one of {', '.join(RECORD_TYPES)}")
        filters = {k: v for k, v in params.items() if k not in CONTROL}
        return export_accepted(request, export_request(user=request.user, record_type=record_type, fmt=fmt,
                                                       params=filters))

    @extend_schema(operation_id="exports_list",
                   responses={200: inline_serializer("ExportList", {"results": EXPORT.__class__(many=True)})},
                   summary="Your exports")
    def get(self, request):
        exports = Export.objects.filter(owner=request.user).order_by("-created_at")[:100]
        return json_response({"results": [export_view(request, e) for e in exports]})


class ExportDetailView(AnalysisView):
    renderer_classes = [JSONRenderer]

    @extend_schema(operation_id="exports_retrieve", responses={200: EXPORT},
                   summary="An export's status")
    def get(self, request, export_id):
        export = Export.objects.filter(pk=export_id, owner=request.user).first()
        if export is None:
            raise ApiError("not_found", "No such export.", status_code=404)
        return json_response(export_view(request, export))


class ExportFileView(AnalysisView):
    renderer_classes = [JSONRenderer, GeoJSONRenderer, CSVRenderer]

    # The file as it was built, by the export's format: CSV, a GeoJSON FeatureCollection, an
    # XLSX workbook or a GeoPackage (EPSG:27700). 409 not ready yet, 410 expired (request it again).
    @extend_schema(operation_id="exports_file", parameters=[OpenApiParameter("format", exclude=True)],
                   responses={(200, "text/csv"): OpenApiTypes.STR, (200, GEOJSON_TYPE): FEATURE_COLLECTION,
                              (200, XLSX_TYPE): OpenApiTypes.BINARY, (200, GPKG_TYPE): OpenApiTypes.BINARY,
                              409: ERROR, 410: ERROR},
                   summary="Your export's file, when ready")
    def get(self, request, export_id):
        export = Export.objects.filter(pk=export_id, owner=request.user).select_related("access_log_entry").first()
        if export is None:
            raise ApiError("not_found", "No such export.", status_code=404)
        handle = export_download(user=request.user, export=export)
        response = FileResponse(
            handle, as_attachment=True, filename=f"{export.record_type}-{export.pk}.{export.format}",
            content_type=MEDIA_TYPES[export.format],
        )
        response["Cache-Control"] = "no-store"
        return response


def _url(request, path: str, params: dict[str, str]) -> str:
    return request.build_absolute_uri(path + "?" + urlencode(params))
