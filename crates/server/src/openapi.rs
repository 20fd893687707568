//! The OpenAPI 3.1 document of the REST API, served at `/api/v1/openapi.json`.

use serde_json::{Value, json};

fn error_responses() -> Value {
    json!({
        "401": {"description": "missing or unknown token", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
        "404": {"description": "no such run", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
    })
}

fn with_errors(mut ok: Value) -> Value {
    if let (Some(map), Value::Object(errors)) = (ok.as_object_mut(), error_responses()) {
        map.extend(errors);
    }
    ok
}

fn id_param() -> Value {
    json!([{"name": "id", "in": "path", "required": true, "schema": {"type": "integer"}}])
}

/// The document.
pub fn document() -> Value {
    let json_of = |r: &str| json!({"application/json": {"schema": {"$ref": format!("#/components/schemas/{r}")}}});
    let list_of = |r: &str| json!({"application/json": {"schema": {"type": "array", "items": {"$ref": format!("#/components/schemas/{r}")}}}});
    json!({
        "openapi": "3.1.0",
        "info": {"title": "slipway", "version": env!("CARGO_PKG_VERSION"), "description": "The slipway CI server's REST API. Agents use /api/v1/agent/... (see docs/server.md)."},
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Error": {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}},
                "Conclusion": {"type": "string", "enum": ["success", "failure", "cancelled", "skipped"]},
                "Run": {"type": "object", "properties": {
                    "id": {"type": "integer"}, "repository": {"type": "string"}, "workflow_file": {"type": "string"},
                    "workflow_name": {"type": "string"}, "event": {"type": "string"}, "git_ref": {"type": "string"},
                    "sha": {"type": "string"}, "actor": {"type": "string"},
                    "status": {"type": "string", "enum": ["queued", "running", "done"]},
                    "conclusion": {"oneOf": [{"$ref": "#/components/schemas/Conclusion"}, {"type": "null"}]},
                    "reason": {"type": ["string", "null"]}, "cancel_requested": {"type": "boolean"},
                    "created_at": {"type": "integer", "description": "ms since the Unix epoch"},
                    "started_at": {"type": ["integer", "null"]}, "finished_at": {"type": ["integer", "null"]},
                    "url": {"type": "string"}
                }},
                "Step": {"type": "object", "properties": {
                    "attempt": {"type": "integer"}, "number": {"type": "integer"}, "name": {"type": "string"},
                    "status": {"type": "string"}, "conclusion": {"type": ["string", "null"]}
                }},
                "Job": {"type": "object", "properties": {
                    "id": {"type": "integer"}, "run_id": {"type": "integer"}, "key": {"type": "string"}, "name": {"type": "string"},
                    "needs": {"type": "array", "items": {"type": "string"}}, "labels": {"type": "array", "items": {"type": "string"}},
                    "status": {"type": "string", "enum": ["pending", "queued", "running", "done"]},
                    "result": {"oneOf": [{"$ref": "#/components/schemas/Conclusion"}, {"type": "null"}]},
                    "reason": {"type": ["string", "null"]}, "attempt": {"type": "integer"},
                    "started_at": {"type": ["integer", "null"]}, "finished_at": {"type": ["integer", "null"]},
                    "steps": {"type": "array", "items": {"$ref": "#/components/schemas/Step"}}
                }},
                "LogText": {"type": "object", "properties": {
                    "job_id": {"type": "integer"}, "job_key": {"type": "string"}, "attempt": {"type": "integer"},
                    "seq": {"type": "integer"}, "text": {"type": "string"}
                }},
                "DispatchRequest": {"type": "object", "required": ["repository", "workflow", "ref"], "properties": {
                    "repository": {"type": "string"}, "workflow": {"type": "string"}, "ref": {"type": "string"},
                    "inputs": {"type": "object", "additionalProperties": {"type": "string"}}
                }},
                "Created": {"type": "object", "properties": {"runs": {"type": "array", "items": {"type": "integer"}}}}
            }
        },
        "security": [{"bearer": []}],
        "paths": {
            "/api/v1/runs": {"get": {
                "summary": "List runs, newest first",
                "parameters": [
                    {"name": "repository", "in": "query", "schema": {"type": "string"}},
                    {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 500}}
                ],
                "responses": with_errors(json!({"200": {"description": "runs", "content": list_of("Run")}}))
            }},
            "/api/v1/runs/{id}": {"get": {
                "summary": "One run", "parameters": id_param(),
                "responses": with_errors(json!({"200": {"description": "the run", "content": json_of("Run")}}))
            }},
            "/api/v1/runs/{id}/jobs": {"get": {
                "summary": "The jobs of a run, with their steps", "parameters": id_param(),
                "responses": with_errors(json!({"200": {"description": "jobs", "content": list_of("Job")}}))
            }},
            "/api/v1/runs/{id}/logs": {"get": {
                "summary": "The logs of a run: text, JSON chunks (Accept: application/json), or live Server-Sent Events (follow=true: `log` events with a LogText, then one `end` event with the Run)",
                "parameters": [
                    {"name": "id", "in": "path", "required": true, "schema": {"type": "integer"}},
                    {"name": "follow", "in": "query", "schema": {"type": "boolean"}},
                    {"name": "token", "in": "query", "schema": {"type": "string"}, "description": "for EventSource, which cannot send headers"}
                ],
                "responses": with_errors(json!({"200": {"description": "logs", "content": {
                    "text/plain": {"schema": {"type": "string"}},
                    "application/json": {"schema": {"type": "array", "items": {"$ref": "#/components/schemas/LogText"}}},
                    "text/event-stream": {"schema": {"type": "string"}}
                }}}))
            }},
            "/api/v1/runs/{id}/cancel": {"post": {
                "summary": "Cancel a run (maintainer or admin)", "parameters": id_param(),
                "responses": with_errors(json!({"202": {"description": "cancelling"}, "403": {"description": "viewer"}, "409": {"description": "already finished"}}))
            }},
            "/api/v1/runs/{id}/rerun": {"post": {
                "summary": "Re-run the failed jobs of a finished run and their dependents (maintainer or admin)", "parameters": id_param(),
                "responses": with_errors(json!({"202": {"description": "the job keys re-run"}, "403": {"description": "viewer"}, "409": {"description": "not finished, or nothing failed"}}))
            }},
            "/api/v1/dispatch": {"post": {
                "summary": "Start a workflow_dispatch run (maintainer or admin)",
                "requestBody": {"required": true, "content": json_of("DispatchRequest")},
                "responses": with_errors(json!({"201": {"description": "created", "content": json_of("Created")}, "403": {"description": "viewer"}}))
            }}
        }
    })
}
