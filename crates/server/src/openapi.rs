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
                    "status": {"type": "string"}, "conclusion": {"type": ["string", "null"]},
                    "outputs": {"type": "object", "additionalProperties": true, "description": "what the step set with $GITHUB_OUTPUT"}
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
                "Created": {"type": "object", "properties": {"runs": {"type": "array", "items": {"type": "integer"}}}},
                "Artifact": {"type": "object", "properties": {
                    "name": {"type": "string"}, "job_id": {"type": "integer"}, "attempt": {"type": "integer"},
                    "files": {"type": "integer"}, "size": {"type": "integer", "description": "bytes of all files"},
                    "created_at": {"type": "integer"}, "url": {"type": "string", "description": "where to download it (a tar archive)"}
                }},
                "RepositoryRequest": {"type": "object", "required": ["clone_url", "forge"], "additionalProperties": false, "properties": {
                    "name": {"type": "string", "description": "owner/name; only for POST /api/v1/repositories"},
                    "clone_url": {"type": "string"},
                    "forge": {"type": "string", "enum": ["gitea", "forgejo", "github", "gitlab", "generic"]},
                    "forge_api": {"type": "string", "description": "where commit statuses go; omitted: none are sent"},
                    "forge_token": {"type": "string", "writeOnly": true, "description": "stored encrypted; omitted on update: kept; empty: removed"},
                    "webhook_secret": {"type": "string", "writeOnly": true, "description": "stored encrypted; omitted on update: kept; empty: removed"},
                    "poll_interval": {"type": "string", "description": "e.g. 30s; omitted: not polled"}
                }},
                "Repository": {"type": "object", "properties": {
                    "name": {"type": "string"}, "clone_url": {"type": "string"}, "forge": {"type": "string"},
                    "forge_api": {"type": ["string", "null"]}, "has_forge_token": {"type": "boolean"},
                    "has_webhook_secret": {"type": "boolean"}, "poll_interval_ms": {"type": ["integer", "null"]},
                    "managed_by": {"type": "string", "enum": ["config", "api"]}
                }},
                "SettingValue": {"type": "object", "required": ["value"], "additionalProperties": false, "properties": {"value": {"type": "string", "maxLength": 65536}}},
                "SecretInfo": {"type": "object", "properties": {
                    "name": {"type": "string"}, "source": {"type": "string", "enum": ["config", "api"]}, "updated_at": {"type": ["integer", "null"]}
                }},
                "Variable": {"type": "object", "properties": {
                    "name": {"type": "string"}, "value": {"type": "string"}, "source": {"type": "string", "enum": ["config", "api"]},
                    "updated_at": {"type": ["integer", "null"]}
                }}
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
            }},
            "/api/v1/runs/{id}/artifacts": {"get": {
                "summary": "The artifacts of a run", "parameters": id_param(),
                "responses": with_errors(json!({"200": {"description": "artifacts", "content": list_of("Artifact")}}))
            }},
            "/api/v1/runs/{id}/artifacts/{name}": {"get": {
                "summary": "Download an artifact: its files as an uncompressed POSIX tar archive (modes kept, mtime 0)",
                "parameters": [
                    {"name": "id", "in": "path", "required": true, "schema": {"type": "integer"}},
                    {"name": "name", "in": "path", "required": true, "schema": {"type": "string"}}
                ],
                "responses": with_errors(json!({"200": {"description": "the archive", "content": {"application/x-tar": {"schema": {"type": "string", "format": "binary"}}}}}))
            }},
            "/api/v1/repositories": {
                "get": {"summary": "Every repository the server builds (no secrets)",
                    "responses": with_errors(json!({"200": {"description": "repositories", "content": list_of("Repository")}}))},
                "post": {"summary": "Register a repository (admin); name in the body",
                    "requestBody": {"required": true, "content": json_of("RepositoryRequest")},
                    "responses": with_errors(json!({"201": {"description": "registered", "content": json_of("Repository")},
                        "400": {"description": "invalid field (named in the error)"}, "403": {"description": "not an admin"}, "409": {"description": "exists"}}))}
            },
            "/api/v1/repositories/{owner}/{name}": {
                "parameters": repo_params(),
                "get": {"summary": "One repository", "responses": with_errors(json!({"200": {"description": "the repository", "content": json_of("Repository")}}))},
                "put": {"summary": "Register or update a repository (admin); webhooks, polling and statuses follow at once",
                    "requestBody": {"required": true, "content": json_of("RepositoryRequest")},
                    "responses": with_errors(json!({"200": {"description": "updated", "content": json_of("Repository")},
                        "201": {"description": "registered", "content": json_of("Repository")},
                        "400": {"description": "invalid field"}, "403": {"description": "not an admin"},
                        "409": {"description": "defined in the configuration file"}}))},
                "delete": {"summary": "Stop building a repository (admin); its runs are kept, its secrets and variables removed",
                    "responses": with_errors(json!({"204": {"description": "deleted"}, "403": {"description": "not an admin"}, "409": {"description": "defined in the configuration file"}}))}
            },
            "/api/v1/repositories/{owner}/{name}/secrets": {"parameters": repo_params(), "get": {
                "summary": "The repository's secrets: names only (admin)",
                "responses": with_errors(json!({"200": {"description": "secrets", "content": list_of("SecretInfo")}}))
            }},
            "/api/v1/repositories/{owner}/{name}/secrets/{secret}": setting_item(repo_params(), "secret", "a repository secret; stored encrypted, never returned"),
            "/api/v1/repositories/{owner}/{name}/variables": {"parameters": repo_params(), "get": {
                "summary": "The repository's variables (admin)",
                "responses": with_errors(json!({"200": {"description": "variables", "content": list_of("Variable")}}))
            }},
            "/api/v1/repositories/{owner}/{name}/variables/{var}": setting_item(repo_params(), "var", "a repository variable"),
            "/api/v1/organizations/{org}/secrets": {"parameters": org_params(), "get": {
                "summary": "An owner's secrets: names only (admin); every repository of the owner gets them",
                "responses": with_errors(json!({"200": {"description": "secrets", "content": list_of("SecretInfo")}}))
            }},
            "/api/v1/organizations/{org}/secrets/{secret}": setting_item(org_params(), "secret", "an organisation secret; a repository's own of the same name wins"),
            "/api/v1/organizations/{org}/variables": {"parameters": org_params(), "get": {
                "summary": "An owner's variables (admin)",
                "responses": with_errors(json!({"200": {"description": "variables", "content": list_of("Variable")}}))
            }},
            "/api/v1/organizations/{org}/variables/{var}": setting_item(org_params(), "var", "an organisation variable")
        }
    })
}

fn repo_params() -> Value {
    json!([
        {"name": "owner", "in": "path", "required": true, "schema": {"type": "string"}},
        {"name": "name", "in": "path", "required": true, "schema": {"type": "string"}}
    ])
}

fn org_params() -> Value {
    json!([{"name": "org", "in": "path", "required": true, "schema": {"type": "string"}}])
}

/// `PUT`/`DELETE` of one secret or variable.
fn setting_item(scope: Value, param: &str, what: &str) -> Value {
    let mut params = scope.as_array().cloned().unwrap_or_default();
    params.push(json!({"name": param, "in": "path", "required": true, "schema": {"type": "string", "pattern": "^[A-Za-z_][A-Za-z0-9_]*$"}}));
    json!({
        "parameters": params,
        "put": {"summary": format!("Set {what} (admin)"),
            "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/SettingValue"}}}},
            "responses": with_errors(json!({"201": {"description": "created"}, "204": {"description": "replaced"},
                "400": {"description": "invalid name or value"}, "403": {"description": "not an admin"}}))},
        "delete": {"summary": format!("Remove {what} (admin)"),
            "responses": with_errors(json!({"204": {"description": "removed"}, "403": {"description": "not an admin"}}))}
    })
}
