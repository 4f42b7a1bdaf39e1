"""The OpenAPI 3.0 document of the API (`GET /api/v1/openapi.json`).

Written by hand beside the handlers (adapters/web/api.py); a test checks
that every route of adapters/web/app.py's table that is under /api/v1 or
is /metrics is described here, and schemathesis checks the answers.
"""

from __future__ import annotations

from typing import Any

ERROR = {"$ref": "#/components/schemas/Error"}


def _json(schema: dict[str, Any], description: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    answer: dict[str, Any] = {"description": description, "content": {"application/json": {"schema": schema}}}
    if headers:
        answer["headers"] = headers
    return answer


def _errors(*codes: int) -> dict[str, Any]:
    words = {400: "bad request", 401: "not authenticated", 403: "too small a role, or a cross-site or "
             "CSRF-less request", 404: "no such thing", 409: "refused", 412: "the file changed meanwhile",
             413: "the body is too large", 428: "If-Match is required", 503: "the daemon does not answer"}
    return {str(c): _json(ERROR, words[c]) for c in codes}


COMMON = (401, 403)
SERVER = {"type": "string", "minLength": 1, "maxLength": 512, "description": "VIRTUAL/SERVER"}
ETAG = {"ETag": {"description": "the file's version, for If-Match", "schema": {"type": "string"}}}


def document() -> dict[str, Any]:
    text_body = {"required": True, "content": {"application/json": {"schema": {
        "type": "object", "required": ["text"], "properties": {"text": {"type": "string"}}}}}}
    check_answer = {"type": "object", "required": ["valid", "errors"], "properties": {
        "valid": {"type": "boolean"},
        "errors": {"type": "array", "items": {"$ref": "#/components/schemas/ConfigIssue"}},
        "diff": {"type": "string"}}}
    return {
        "openapi": "3.0.3",
        "info": {"title": "shoal web API", "version": "1",
                 "description": "Monitor and operate a shoal router pair (docs/WEB.md)."},
        "servers": [{"url": "/"}],
        "security": [{"basic": []}, {"session": []}],
        "components": {
            "securitySchemes": {
                "basic": {"type": "http", "scheme": "basic"},
                "session": {"type": "apiKey", "in": "cookie", "name": "shoal_session",
                            "description": "the browser's session; POST/PUT/DELETE also need X-CSRF-Token"},
            },
            "schemas": {
                "Error": {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}},
                "ConfigIssue": {"type": "object", "required": ["line", "col", "message"], "properties": {
                    "line": {"type": "integer"}, "col": {"type": "integer"}, "message": {"type": "string"}}},
                "Status": {"type": "object", "required": ["node", "role", "vips", "partner", "services"],
                           "properties": {
                               "node": {"type": "string", "enum": ["primary", "backup"]},
                               "role": {"type": "string"},
                               "vips": {"type": "array", "items": {"type": "string"}},
                               "partner": {"type": "object"},
                               "services": {"type": "array", "items": {"type": "object"}}}},
            },
        },
        "paths": {
            "/api/v1/status": {"get": {
                "summary": "what the daemon knows (the object of shoal status --json)",
                "responses": {"200": _json({"$ref": "#/components/schemas/Status"}, "the status"),
                              **_errors(*COMMON, 503)}}},
            "/api/v1/partner/status": {"get": {
                "summary": "the partner router's own status, through its web tool (shoal web --partner)",
                "responses": {"200": _json({"$ref": "#/components/schemas/Status"}, "the partner's status"),
                              "502": _json(ERROR, "the partner's web tool does not answer"),
                              **_errors(*COMMON, 404)}}},
            "/api/v1/admin": {"post": {
                "summary": "drain, undrain, weight or failover (operator)",
                "requestBody": {"required": True, "content": {"application/json": {"schema": {"oneOf": [
                    {"type": "object", "required": ["action", "server"], "properties": {
                        "action": {"type": "string", "enum": ["drain", "undrain"]}, "server": SERVER}},
                    {"type": "object", "required": ["action", "server", "weight"], "properties": {
                        "action": {"type": "string", "enum": ["weight"]}, "server": SERVER,
                        "weight": {"type": "integer", "minimum": 0, "maximum": 65535}}},
                    {"type": "object", "required": ["action"], "properties": {
                        "action": {"type": "string", "enum": ["failover"]}}},
                ]}}}},
                "responses": {"200": _json({"type": "object", "required": ["ok"],
                                            "properties": {"ok": {"type": "boolean"}}}, "applied"),
                              **_errors(400, *COMMON, 409, 413, 503)}}},
            "/api/v1/config": {
                "get": {"summary": "the lvs.cf as it is on disk",
                        "responses": {"200": _json({"type": "object", "required": ["text", "serial_no"], "properties": {
                            "text": {"type": "string"}, "serial_no": {"type": "integer", "nullable": True}}},
                            "the file", ETAG), **_errors(*COMMON)}},
                "put": {"summary": "replace the lvs.cf and reload (admin)",
                        "parameters": [{"name": "If-Match", "in": "header", "required": True,
                                        "schema": {"type": "string", "minLength": 1},
                                        "description": "the ETag it was read with (428 without it)"}],
                        "requestBody": text_body,
                        "responses": {
                            "200": _json({"type": "object", "required": ["serial_no", "reloaded", "detail"],
                                          "properties": {"serial_no": {"type": "integer"},
                                                         "reloaded": {"type": "boolean"}, "detail": {}}},
                                         "written and reloaded", ETAG),
                            "422": _json(check_answer, "invalid: nothing written"),
                            **_errors(400, *COMMON, 412, 413, 428)}},
            },
            "/api/v1/config/check": {"post": {
                "summary": "check a candidate lvs.cf ({text}), or the forms' edits made to the file ({etag, edits}: "
                           "the resulting text, errors at their fields); when valid, the diff and table operations",
                "requestBody": {"required": True, "content": {"application/json": {"schema": {"anyOf": [
                    {"type": "object", "required": ["text"], "properties": {"text": {"type": "string"}}},
                    {"type": "object", "required": ["etag", "edits"], "properties": {
                        "etag": {"type": "string"},
                        "edits": {"type": "array", "maxItems": 1000, "items": {"anyOf": [
                            {"type": "object", "required": ["block", "key", "value"],
                             "description": "set a key, added when the block lacks it (value null or \"\": removed)",
                             "properties": {
                                 "op": {"type": "string", "enum": ["set"]},
                                 "block": {"type": "array", "maxItems": 2, "items": {"type": "string"}},
                                 "key": {"type": "string"}, "value": {"type": "string", "nullable": True}}},
                            {"type": "object", "required": ["op", "kind", "name"],
                             "description": "an empty virtual at the end of the file, or server at the end of "
                                            "virtual `parent`",
                             "properties": {
                                 "op": {"type": "string", "enum": ["add_block"]},
                                 "kind": {"type": "string", "enum": ["virtual", "server"]},
                                 "name": {"type": "string"}, "parent": {"type": "string", "nullable": True}}},
                            {"type": "object", "required": ["op", "block"],
                             "description": "a virtual (with its servers) or a server removed, with its comment lines",
                             "properties": {
                                 "op": {"type": "string", "enum": ["remove_block"]},
                                 "block": {"type": "array", "minItems": 1, "maxItems": 2,
                                           "items": {"type": "string"}}}},
                        ]}}}},
                ]}}}},
                "responses": {"200": _json(check_answer, "the verdict"), **_errors(400, *COMMON, 412, 413)}}},
            "/api/v1/config/history": {"get": {
                "summary": "the versions the file had before each apply, newest first",
                "responses": {"200": _json({"type": "object", "required": ["versions"], "properties": {
                    "versions": {"type": "array", "items": {"type": "object", "properties": {
                        "id": {"type": "string"}, "serial_no": {"type": "integer"}, "saved_at": {"type": "string"},
                        "size": {"type": "integer"}}}}}}, "versions"), **_errors(*COMMON)}}},
            "/api/v1/config/history/{version}": {"get": {
                "summary": "the text of one saved version",
                "parameters": [{"name": "version", "in": "path", "required": True, "schema": {"type": "string"}}],
                "responses": {"200": _json({"type": "object", "required": ["id", "text"], "properties": {
                    "id": {"type": "string"}, "text": {"type": "string"}}}, "the version"),
                    **_errors(*COMMON, 404)}}},
            "/api/v1/config/revert": {"post": {
                "summary": "make a saved version current again, serial_no raised, and reload (admin)",
                "parameters": [{"name": "If-Match", "in": "header", "required": True,
                                "schema": {"type": "string", "minLength": 1},
                                "description": "the ETag of the current file (428 without it)"}],
                "requestBody": {"required": True, "content": {"application/json": {"schema": {
                    "type": "object", "required": ["version"], "properties": {"version": {"type": "string"}}}}}},
                "responses": {"200": _json({"type": "object", "required": ["serial_no", "reloaded", "detail"],
                                            "properties": {"serial_no": {"type": "integer"},
                                                           "reloaded": {"type": "boolean"}, "detail": {}}},
                                           "written and reloaded", ETAG),
                              "422": _json(check_answer, "invalid: nothing written"),
                              **_errors(400, *COMMON, 404, 412, 413, 428)}}},
            "/api/v1/config/push": {"post": {
                "summary": "copy this file to the partner's web tool (admin; shoal web --partner)",
                "parameters": [{"name": "If-Match", "in": "header", "required": True,
                                "schema": {"type": "string", "minLength": 1},
                                "description": "the ETag of this file the admin looked at"}],
                "responses": {"200": _json({"type": "object", "required": ["ok"], "properties": {
                    "ok": {"type": "boolean"}, "serial_no": {"type": "integer"}, "reloaded": {"type": "boolean"},
                    "detail": {}}}, "copied, and the partner reloaded"),
                    "502": _json(ERROR, "the partner's web tool does not answer"),
                    **_errors(*COMMON, 409, 412, 428)}}},
            "/api/v1/whatif": {"post": {
                "summary": "run the configuration (or a candidate text) in the simulator with the chosen faults, "
                           "from the real servers' health now: timeline, tables, VIP owner; the pair is not touched "
                           "(operator)",
                "requestBody": {"required": True, "content": {"application/json": {"schema": {
                    "type": "object", "required": ["faults"], "properties": {
                        "faults": {"type": "array", "minItems": 1, "maxItems": 20, "items": {"type": "object"}},
                        "duration_s": {"type": "number"}, "text": {"type": "string"}}}}}},
                "responses": {"200": _json({"type": "object", "required": ["timeline", "table", "vip_owner", "roles"],
                                            "properties": {"timeline": {"type": "array", "items": {"type": "string"}},
                                                           "table": {"type": "array", "items": {"type": "string"}},
                                                           "vip_owner": {"type": "string"},
                                                           "roles": {"type": "object"}}}, "the simulated outcome"),
                              "422": _json(ERROR, "the configuration or a fault cannot be simulated"),
                              **_errors(400, *COMMON, 413)}}},
            "/api/v1/events": {"get": {
                "summary": "server-sent events: one JSON object each (t, node, kind and the kind's fields)",
                "responses": {"200": {"description": "the event stream",
                                      "content": {"text/event-stream": {"schema": {"type": "string"}}}},
                              **_errors(*COMMON)}}},
            "/api/v1/audit": {"get": {
                "summary": "the audit log, newest first",
                "parameters": [{"name": "limit", "in": "query", "required": False,
                                "schema": {"type": "integer", "minimum": 1, "maximum": 1000}}],
                "responses": {"200": _json({"type": "object", "required": ["entries"], "properties": {
                    "entries": {"type": "array", "items": {"type": "object"}}}}, "entries"),
                    **_errors(400, *COMMON)}}},
            "/api/v1/users": {"get": {
                "summary": "the web users and their roles (admin)",
                "responses": {"200": _json({"type": "object", "required": ["users"], "properties": {
                    "users": {"type": "array", "items": {"type": "object", "properties": {
                        "name": {"type": "string"}, "role": {"type": "string"}}}}}}, "users"),
                    **_errors(*COMMON)}}},
            "/api/v1/users/{name}": {
                "parameters": [{"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}],
                "put": {"summary": "add a user or set their role and password (admin)",
                        "requestBody": {"required": True, "content": {"application/json": {"schema": {
                            "type": "object", "required": ["password"], "properties": {
                                "role": {"type": "string", "enum": ["viewer", "operator", "admin"]},
                                "password": {"type": "string"}}}}}},
                        "responses": {"200": _json({"type": "object", "properties": {"ok": {"type": "boolean"}}},
                                                   "saved"), **_errors(400, *COMMON, 409, 413)}},
                "delete": {"summary": "remove a user (admin; never the last admin)",
                           "responses": {"200": _json({"type": "object", "properties": {"ok": {"type": "boolean"}}},
                                                      "removed"), **_errors(*COMMON, 404, 409)}},
            },
            "/api/v1/openapi.json": {"get": {
                "summary": "this document",
                "responses": {"200": _json({"type": "object"}, "the OpenAPI document"), **_errors(*COMMON)}}},
            "/metrics": {"get": {
                "summary": "Prometheus text: shoal_role, shoal_server_up, shoal_server_weight, "
                           "shoal_failovers_total, shoal_heartbeats_received_total, ...",
                "responses": {"200": {"description": "metrics", "content": {"text/plain": {"schema": {"type": "string"}}}},
                              **_errors(*COMMON)}}},
        },
    }
