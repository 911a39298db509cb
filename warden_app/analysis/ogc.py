"""OGC API - Features, Part 1 (Core, GeoJSON, OpenAPI 3.0) over the field records.

Collections are record types; items are the records the user may see, redacted and
logged exactly as the records API does (selectors.records_query, views.read_page): a page
returning personal fields writes one `disclosure` row naming those records, with the
client as recipient, committed before the page is sent. Paging is by keyset (`after`,
the last id of the page), so following `next` links never skips or repeats a record.
"""
from __future__ import annotations

import dataclasses
from typing import Any
from urllib.parse import urlencode

import orjson
from django.conf import settings
from django.contrib.gis.db.models import Extent
from django.http import HttpResponse
from django.urls import reverse
from django.utils import timezone
from rest_framework.renderers import JSONRenderer

from fieldsync import parsing
from fieldsync.errors import ApiError, field_error, invalid
from fieldsync.responses import json_response

from ..models import Area
from .filters import CRS84, RecordFilter, datetime_interval_parse, record_filter_parse
from .renderers import GEOJSON_TYPE, GeoJSONRenderer, OpenAPIRenderer
from .selectors import records_query
from .views import AnalysisView, read_log, read_page

OPENAPI_TYPE = "application/vnd.oai.openapi+json;version=3.0"
CONFORMANCE = [
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/core",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/geojson",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/oas30",
]
# collection id -> (record type, title, description)
COLLECTIONS: dict[str, tuple[str, str, str]] = {
    "observations": (
        "observation", "ASB observations",
        "Anti-social behaviour incidents recorded in the street (qualifier, incident type, time, place).",
    ),
    "street_audits": (
        "street_audit", "Street audits", "Environmental visual audits of an area or route (start point).",
    ),
    "audit_items": (
        "audit_item", "Audit items", "Findings of street audits: issue type, grade A-D, responsible agency.",
    ),
}
# Query parameters of /items besides the standard ones (the records API's filters).
EXTRA_FILTERS = ("qualifier", "incident_type", "issue_type", "grade", "area", "organisation", "review_state",
                 "include_rejected")
ITEM_PARAMS = {"f", "limit", "bbox", "bbox-crs", "datetime", "after", *EXTRA_FILTERS}


class OgcView(AnalysisView):
    renderer_classes = [JSONRenderer, GeoJSONRenderer, OpenAPIRenderer]
    schema = None  # described by its own OpenAPI document, /ogc/api

    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)
        f = request.query_params.get("f")
        if f not in (None, "", "json", "geojson", "application/json", "application/geo+json"):
            raise invalid("f", "not_in_choices", "only json is offered")


def _base(request) -> str:
    return request.build_absolute_uri(reverse("ogc-landing"))


def _link(href: str, rel: str, type_: str, title: str = "") -> dict[str, str]:
    link = {"href": href, "rel": rel, "type": type_}
    if title:
        link["title"] = title
    return link


class LandingView(OgcView):
    def get(self, request):
        base = _base(request)
        return json_response({
            "title": "fieldsync field records",
            "description": "Street audits and ASB observations of the community safety partnership, "
                           "redacted for the reader; personal data reads are logged (DPA 2018 s.62).",
            "links": [
                _link(base, "self", "application/json", "This document"),
                _link(base + "api", "service-desc", OPENAPI_TYPE, "The API definition"),
                _link(base + "conformance", "conformance", "application/json", "Conformance classes"),
                _link(base + "collections", "data", "application/json", "The collections"),
            ],
        })


class ConformanceView(OgcView):
    def get(self, request):
        return json_response({"conformsTo": CONFORMANCE})


def _collection(request, collection_id: str, extent: tuple | None) -> dict[str, Any]:
    _, title, description = COLLECTIONS[collection_id]
    href = _base(request) + f"collections/{collection_id}"
    data: dict[str, Any] = {
        "id": collection_id,
        "title": title,
        "description": description,
        "itemType": "feature",
        "crs": [CRS84],
        "links": [
            _link(href, "self", "application/json", title),
            _link(href + "/items", "items", GEOJSON_TYPE, f"{title} (GeoJSON)"),
        ],
    }
    if extent:
        data["extent"] = {"spatial": {"bbox": [list(extent)], "crs": CRS84}}
    return data


def _partnership_extent() -> tuple | None:
    """The operational areas' extent: a hint for clients, cheap at any number of records."""
    return Area.objects.filter(boundary_set__operational=True).aggregate(e=Extent("geom"))["e"]


class CollectionsView(OgcView):
    def get(self, request):
        extent = _partnership_extent()
        base = _base(request)
        return json_response({
            "links": [_link(base + "collections", "self", "application/json", "The collections")],
            "collections": [_collection(request, cid, extent) for cid in COLLECTIONS],
        })


def _collection_type(collection_id: str) -> str:
    if collection_id not in COLLECTIONS:
        raise ApiError("not_found", f"No collection {collection_id!r}.", status_code=404)
    return COLLECTIONS[collection_id][0]


class CollectionView(OgcView):
    def get(self, request, collection_id: str):
        _collection_type(collection_id)
        return json_response(_collection(request, collection_id, _partnership_extent()))


def _recipient(request) -> str:
    agent = request.META.get("HTTP_USER_AGENT", "")[:80]
    return f"{request.user.get_username()} via OGC API" + (f" ({agent})" if agent else "")


class ItemsView(OgcView):
    def get(self, request, collection_id: str):
        record_type = _collection_type(collection_id)
        params = request.query_params
        unknown = sorted(set(params) - ITEM_PARAMS)
        if unknown:
            raise ApiError("invalid", f"unknown query parameter(s): {', '.join(unknown)}",
                           fields={name: [field_error("unknown_parameter", "unknown parameter")] for name in unknown})
        # OGC: a limit above the server's maximum is served with the maximum, not refused.
        limit = parsing.page_limit(params.get("limit"), default=settings.ANALYSIS_PAGE_DEFAULT,
                                   maximum=settings.ANALYSIS_PAGE_MAX, clamp=True)
        after = parsing.uuid_value("after", params.get("after"))
        flt = record_filter_parse(record_type, {k: params.get(k) for k in (*EXTRA_FILTERS, "bbox", "bbox-crs")})
        start, end = datetime_interval_parse(params.get("datetime"))
        flt = dataclasses.replace(flt, time_from=start, time_to=end)
        query = records_query(request.user, record_type, flt)
        log = read_log(request, query, action="disclosure", view="ogc.items", recipient=_recipient(request),
                       extra={"collection": collection_id, "datetime": params.get("datetime") or None})
        rows, more = read_page(query, shape="feature", limit=limit, after=after, log=log)
        base = _base(request) + f"collections/{collection_id}/items"
        kept = {k: v for k, v in params.items() if k != "after"}
        links = [
            _link(request.build_absolute_uri(), "self", GEOJSON_TYPE, "This page"),
            _link(_base(request) + f"collections/{collection_id}", "collection", "application/json"),
        ]
        if more:
            links.append(_link(_with(base, {**kept, "limit": str(limit), "after": str(rows[-1][0])}), "next",
                               GEOJSON_TYPE, "Next page"))
        head = orjson.dumps({
            "type": "FeatureCollection",
            "timeStamp": timezone.now().isoformat(timespec="seconds"),
            "numberReturned": len(rows),
            "links": links,
        })
        body = head[:-1] + b',"features":[' + ",".join([row[1] for row in rows]).encode() + b"]}"
        response = HttpResponse(body, content_type=GEOJSON_TYPE)
        response["Cache-Control"] = "no-store"
        return response


class ItemView(OgcView):
    def get(self, request, collection_id: str, feature_id: str):
        record_type = _collection_type(collection_id)
        record_id = parsing.uuid_value("featureId", feature_id)
        query = records_query(request.user, record_type, RecordFilter(record_type=record_type, include_rejected=True))
        query.base = query.base.filter(pk=record_id)
        log = read_log(request, query, action="disclosure", view="ogc.item", recipient=_recipient(request),
                       extra={"collection": collection_id})
        rows, _ = read_page(query, shape="feature", limit=1, after=None, log=log)
        if not rows:
            raise ApiError("not_found", "No such feature, or not yours to see.", status_code=404)
        feature = orjson.loads(rows[0][1])
        href = _base(request) + f"collections/{collection_id}"
        feature["links"] = [_link(f"{href}/items/{record_id}", "self", GEOJSON_TYPE),
                            _link(href, "collection", "application/json")]
        response = json_response(feature, content_type=GEOJSON_TYPE)
        response["Cache-Control"] = "no-store"
        return response


def _with(base: str, params: dict[str, str]) -> str:
    return base + ("?" + urlencode(params) if params else "")


class OpenApiView(OgcView):
    # JSON first: the first renderer is the one errors are written with (FirstRendererNegotiation);
    # the document itself is sent as OPENAPI_TYPE whatever the renderers.
    renderer_classes = [JSONRenderer, OpenAPIRenderer]

    def get(self, request):
        return json_response(openapi_document(_base(request)), content_type=OPENAPI_TYPE)


ERROR_DESCRIPTIONS = {
    400: "invalid parameters (the records API's error shape: code, message, fields)",
    401: "no or wrong credentials",
    403: "not a reader of records",
    404: "no such collection or feature (or not yours to see)",
}


def openapi_document(base: str) -> dict[str, Any]:
    """A minimal OpenAPI 3.0 definition: the paths, and the parameters of /items."""
    def responses(description: str, media: str = "application/json", *errors: int) -> dict:
        # Every operation: 400 (`f` other than JSON), 401 (no or wrong credentials: Basic
        # challenges), 403 (not a reader of records); errors are always JSON.
        error = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
        return {
            "200": {"description": description, "content": {media: {"schema": {"type": "object"}}}},
            **{str(status): {"description": ERROR_DESCRIPTIONS[status], **error}
               for status in sorted({400, 401, 403, *errors})},
        }

    def param(name: str, schema: dict, description: str, where: str = "query", required: bool = False) -> dict:
        return {"name": name, "in": where, "required": required, "schema": schema, "description": description,
                "style": "form", "explode": False}

    collection_id = param("collectionId", {"type": "string", "enum": list(COLLECTIONS)}, "collection", "path", True)
    item_params = [
        collection_id,
        param("limit", {"type": "integer", "minimum": 1, "maximum": settings.ANALYSIS_PAGE_MAX,
                        "default": settings.ANALYSIS_PAGE_DEFAULT}, "features per page"),
        param("bbox", {"type": "array", "minItems": 4, "maxItems": 6, "items": {"type": "number"}},
              "minlon,minlat,maxlon,maxlat (CRS84)"),
        param("datetime", {"type": "string"}, "instant or interval (RFC 3339, '..' for open ends)"),
        param("after", {"type": "string", "format": "uuid"}, "paging: the last id of the previous page"),
        *(param(name, {"type": "string"}, "records API filter (comma-separated codes or ids)")
          for name in EXTRA_FILTERS),
    ]
    security = [{"basic": []}, {"bearer": []}]
    return {
        "openapi": "3.0.3",
        "info": {"title": "fieldsync OGC API - Features", "version": "1.0"},
        "servers": [{"url": base.rstrip("/")}],
        "components": {
            "securitySchemes": {
                "basic": {"type": "http", "scheme": "basic"},
                "bearer": {"type": "http", "scheme": "bearer", "description": "personal API token (fsp_...)"},
            },
            "schemas": {"Error": {
                "type": "object", "required": ["code", "message", "fields"],
                "properties": {"code": {"type": "string"}, "message": {"type": "string"},
                               "fields": {"type": "object"}},
            }},
        },
        "security": security,
        "paths": {
            "/": {"get": {"operationId": "getLandingPage", "responses": responses("landing page")}},
            "/conformance": {"get": {"operationId": "getConformance", "responses": responses("conformance")}},
            "/api": {"get": {"operationId": "getApi", "responses": responses("this document", OPENAPI_TYPE)}},
            "/collections": {"get": {"operationId": "getCollections", "responses": responses("collections")}},
            "/collections/{collectionId}": {"get": {
                "operationId": "describeCollection", "parameters": [collection_id],
                "responses": responses("collection", "application/json", 404),
            }},
            "/collections/{collectionId}/items": {"get": {
                "operationId": "getFeatures", "parameters": item_params,
                "responses": responses("features", GEOJSON_TYPE, 404),
            }},
            "/collections/{collectionId}/items/{featureId}": {"get": {
                "operationId": "getFeature",
                "parameters": [collection_id, param("featureId", {"type": "string"}, "record id", "path", True)],
                "responses": responses("feature", GEOJSON_TYPE, 404),
            }},
        },
    }
