//! The OpenAPI 3.1 document of the REST API, served at `/api/v1/openapi.json`.

use serde_json::{Value, json};

fn error_responses() -> Value {
    json!({
        "401": {"description": "missing or unknown token", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
        "404": {"description": "no such run, deployment or environment (named in the error)", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
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
    let mut schemas = run_schemas();
    merge(&mut schemas, delivery_schemas());
    merge(&mut schemas, crate::users::openapi_schemas());
    let mut paths = run_paths();
    merge(&mut paths, delivery_paths());
    let (cache_schemas, cache_paths) = crate::caches::openapi();
    merge(&mut schemas, cache_schemas);
    merge(&mut paths, cache_paths);
    merge(&mut paths, crate::users::openapi_paths());
    json!({
        "openapi": "3.1.0",
        "info": {"title": "slipway", "version": env!("CARGO_PKG_VERSION"), "description": "The slipway CI server's REST API. Agents use /api/v1/agent/... (see docs/server.md)."},
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": schemas
        },
        "security": [{"bearer": []}],
        "paths": paths
    })
}

/// Adds `more`'s keys to `into` (both objects).
fn merge(into: &mut Value, more: Value) {
    if let (Some(map), Value::Object(more)) = (into.as_object_mut(), more) {
        map.extend(more);
    }
}

fn json_of(r: &str) -> Value {
    json!({"application/json": {"schema": {"$ref": format!("#/components/schemas/{r}")}}})
}

fn list_of(r: &str) -> Value {
    json!({"application/json": {"schema": {"type": "array", "items": {"$ref": format!("#/components/schemas/{r}")}}}})
}

/// Runs, jobs, logs, artifacts, repositories, secrets and variables.
fn run_schemas() -> Value {
    json!({
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
            "outputs": {"type": "object", "additionalProperties": true, "description": "what the step set with $GITHUB_OUTPUT"},
            "summary": {"type": "string", "description": "the step summary markdown ($GITHUB_STEP_SUMMARY, masked, at most 1 MiB); absent when none"}
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
            "seq": {"type": "integer"}, "text": {"type": "string"},
            "time_ms": {"type": "integer", "description": "when the chunk's first line was read (agent clock, ms since the Unix epoch)"}
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
    })
}

/// Environments, deployments, the audit trail and GitOps reports.
fn delivery_schemas() -> Value {
    json!({
        "Deployed": {"type": "object", "required": ["source", "digest"], "description": "what one deploy step reported", "properties": {
            "source": {"type": "string", "description": "the step (or `job output NAME`) that reported it"},
            "digest": {"type": "string"}, "image": {"type": "string"}, "target": {"type": "string"}
        }},
        "Approval": {"type": "object", "properties": {
            "user": {"type": "string"}, "decision": {"type": "string", "enum": ["approved", "rejected"]},
            "comment": {"type": ["string", "null"]}, "at": {"type": "integer", "description": "ms since the Unix epoch"}
        }},
        "Deployment": {"type": "object", "properties": {
            "id": {"type": "integer"}, "repository": {"type": "string"}, "environment": {"type": "string"},
            "status": {"type": "string", "enum": ["queued", "waiting", "in_progress", "success", "failure", "rolled_back", "rejected", "cancelled"]},
            "reason": {"type": ["string", "null"], "description": "why it waits or ended so"},
            "url": {"type": ["string", "null"]}, "sha": {"type": "string"}, "git_ref": {"type": "string"},
            "run_id": {"type": "integer"}, "run_url": {"type": "string"}, "job_id": {"type": "integer"}, "job_key": {"type": "string"},
            "pusher": {"type": "string", "description": "the run's actor"},
            "approvers": {"type": "array", "items": {"type": "string"}},
            "approvals": {"type": "array", "items": {"$ref": "#/components/schemas/Approval"}},
            "reviewers": {"type": "array", "items": {"type": "string"}, "description": "users and groups who may approve"},
            "required_approvals": {"type": "integer"},
            "digests": {"type": "array", "items": {"$ref": "#/components/schemas/Deployed"}},
            "rollback_of": {"type": ["integer", "null"], "description": "the deployment this one rolled back to"},
            "created_at": {"type": "integer"}, "started_at": {"type": ["integer", "null"]}, "finished_at": {"type": ["integer", "null"]}
        }},
        "Audit": {"type": "object", "properties": {
            "id": {"type": "integer"}, "at": {"type": "integer"}, "actor": {"type": "string"},
            "action": {"type": "string", "description": "e.g. deployment.approved, approve.refused"},
            "detail": {"type": ["string", "null"]}, "environment": {"type": ["string", "null"]},
            "deployment_id": {"type": ["integer", "null"]}, "run_id": {"type": ["integer", "null"]}
        }},
        "DeploymentDetail": {"allOf": [{"$ref": "#/components/schemas/Deployment"}, {"type": "object", "properties": {
            "audit": {"type": "array", "items": {"$ref": "#/components/schemas/Audit"}}
        }}]},
        "Environment": {"type": "object", "properties": {
            "repository": {"type": ["string", "null"], "description": "null: every repository"},
            "name": {"type": "string"}, "reviewers": {"type": "array", "items": {"type": "string"}},
            "required_approvals": {"type": "integer"}, "allow_self_approval": {"type": "boolean"},
            "wait_timer_ms": {"type": "integer"}, "timeout_ms": {"type": "integer"},
            "branches": {"type": "array", "items": {"type": "string"}}, "tags": {"type": "array", "items": {"type": "string"}},
            "secrets": {"type": "array", "items": {"type": "string"}, "description": "names only"},
            "vars": {"type": "object", "additionalProperties": {"type": "string"}},
            "url": {"type": ["string", "null"]},
            "managed_by": {"type": "string", "enum": ["config", "api", "none"], "description": "config: the configuration file (read-only here); api: defined through this API; none: used by a workflow, no rules"},
            "updated_by": {"type": ["string", "null"]}, "updated_at": {"type": ["integer", "null"]},
            "current": {"type": "array", "items": {"$ref": "#/components/schemas/Deployment"}, "description": "the newest successful deployment, per repository"},
            "pending": {"type": "array", "items": {"$ref": "#/components/schemas/Deployment"}, "description": "deployments not finished yet"}
        }},
        "EnvironmentSpec": {"type": "object", "additionalProperties": false, "description": "protection rules; every field optional", "properties": {
            "reviewers": {"type": "array", "items": {"type": "string"}, "description": "user or group names; none: continuous deployment"},
            "required_approvals": {"type": ["integer", "null"], "description": "default 1 with reviewers"},
            "allow_self_approval": {"type": "boolean"},
            "wait_timer": {"type": ["string", "null"], "description": "30s, 5m, 1h (or wait_timer_ms)"}, "wait_timer_ms": {"type": ["integer", "null"]},
            "timeout": {"type": ["string", "null"], "description": "default 30 days (or timeout_ms)"}, "timeout_ms": {"type": ["integer", "null"]},
            "branches": {"type": "array", "items": {"type": "string"}}, "tags": {"type": "array", "items": {"type": "string"}},
            "url": {"type": ["string", "null"], "description": "http:// or https://"}
        }},
        "DecisionRequest": {"type": "object", "required": ["environment"], "properties": {
            "environment": {"type": "string"}, "comment": {"type": ["string", "null"]}
        }},
        "DecisionReply": {"type": "object", "properties": {
            "deployments": {"type": "array", "items": {"$ref": "#/components/schemas/Deployment"}, "description": "the deployments decided"}
        }},
        "RollbackRequest": {"type": "object", "required": ["environment"], "properties": {
            "environment": {"type": "string"},
            "repository": {"type": ["string", "null"], "description": "needed when several repositories deploy to environments of this name"},
            "to": {"type": ["integer", "null"], "description": "the deployment to go back to; default: the newest successful one before the current with another commit or digest"}
        }},
        "RollbackReply": {"type": "object", "properties": {
            "run_id": {"type": "integer"}, "run_url": {"type": "string"}, "to": {"$ref": "#/components/schemas/Deployment"}
        }},
        "GitopsHistoryEntry": {"type": "object", "required": ["id", "revision", "started_at", "finished_at", "result", "trigger"], "properties": {
            "id": {"type": "integer"}, "revision": {"type": "string"}, "started_at": {"type": "integer"}, "finished_at": {"type": "integer"},
            "result": {"type": "string"}, "trigger": {"type": "string"}, "message": {"type": "string"},
            "changes": {"type": "array", "items": {"type": "string"}},
            "source_commit": {"type": ["string", "null"], "description": "the CI commit the promote commit carried"},
            "run": {"type": ["string", "null"], "description": "the CI run that promoted it"}
        }},
        "GitopsReport": {"type": "object", "required": ["agent", "app", "repository", "branch", "target", "sync", "health"],
            "description": "a GitOps agent's report of one app (protocol::gitops::Report)", "properties": {
            "agent": {"type": "string"}, "app": {"type": "string"}, "repository": {"type": "string"}, "path": {"type": "string"},
            "branch": {"type": "string"}, "target": {"type": "string"},
            "revision": {"type": ["string", "null"]}, "target_revision": {"type": ["string", "null"]},
            "sync": {"type": "string", "enum": ["Synced", "OutOfSync", "Unknown"]},
            "health": {"type": "string", "enum": ["Healthy", "Progressing", "Missing", "Degraded"]},
            "paused": {"type": "boolean"}, "message": {"type": "string"}, "reconciled_at": {"type": "integer"},
            "history": {"type": "array", "items": {"$ref": "#/components/schemas/GitopsHistoryEntry"}}
        }},
        "GitopsRecorded": {"type": "object", "properties": {"recorded": {"type": "integer", "description": "new history entries stored"}}},
        "GitopsApp": {"type": "object", "properties": {
            "agent": {"type": "string"}, "app": {"type": "string"}, "repository": {"type": "string"}, "path": {"type": "string"},
            "branch": {"type": "string"}, "target": {"type": "string"},
            "revision": {"type": ["string", "null"]}, "target_revision": {"type": ["string", "null"]},
            "sync": {"type": "string", "enum": ["Synced", "OutOfSync", "Unknown"]},
            "health": {"type": "string", "enum": ["Healthy", "Progressing", "Missing", "Degraded"]},
            "paused": {"type": "boolean"}, "message": {"type": "string"},
            "reconciled_at": {"type": "integer"}, "reported_at": {"type": "integer"}
        }},
        "GitopsSync": {"type": "object", "properties": {
            "agent": {"type": "string"}, "app": {"type": "string"}, "id": {"type": "integer"}, "revision": {"type": "string"},
            "source_commit": {"type": ["string", "null"]}, "run": {"type": ["string", "null"]},
            "trigger": {"type": "string"}, "result": {"type": "string"}, "message": {"type": "string"},
            "changes": {"type": "array", "items": {"type": "string"}},
            "started_at": {"type": "integer"}, "finished_at": {"type": "integer"}
        }}
    })
}

fn run_paths() -> Value {
    json!({
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
        "/api/v1/jobs/{id}/cancel": {"post": {
            "summary": "Cancel one job (maintainer or admin): not started, it ends now; running, its agent stops it. Its dependents are skipped and its run ends cancelled", "parameters": id_param(),
            "responses": with_errors(json!({"202": {"description": "cancelling"}, "403": {"description": "viewer"}, "404": {"description": "no such job"}, "409": {"description": "already finished"}}))
        }},
        "/api/v1/runs/{id}/rerun": {"post": {
            "summary": "Re-run the failed jobs (or, with all=true, every job) of a finished run and their dependents (maintainer or admin)",
            "parameters": [{"name": "id", "in": "path", "required": true, "schema": {"type": "integer"}},
                           {"name": "all", "in": "query", "required": false, "schema": {"type": "boolean", "default": false}}],
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
    })
}

fn delivery_paths() -> Value {
    json!({
        "/api/v1/environments": {"get": {
            "summary": "The configured environments and those workflows deployed to, with what runs there now and what waits",
            "parameters": [repository_query()],
            "responses": with_errors(json!({"200": {"description": "environments", "content": list_of("Environment")}}))
        }},
        "/api/v1/environments/{name}": {
            "parameters": [{"name": "name", "in": "path", "required": true, "schema": {"type": "string"}}, repository_query()],
            "get": {"summary": "One environment",
                "responses": with_errors(json!({"200": {"description": "the environment", "content": json_of("Environment")}}))},
            "put": {"summary": "Create or replace an environment's protection rules (admin; audited); the gate uses them at once",
                "requestBody": {"required": true, "content": json_of("EnvironmentSpec")},
                "responses": with_errors(json!({"200": {"description": "updated", "content": json_of("Environment")},
                    "201": {"description": "created", "content": json_of("Environment")},
                    "400": {"description": "invalid field (named in the message)"}, "403": {"description": "not an admin"},
                    "404": {"description": "unknown repository"}, "409": {"description": "defined in the configuration file"}}))},
            "delete": {"summary": "Delete an environment defined through the API, with its secrets and variables (admin; audited)",
                "responses": with_errors(json!({"204": {"description": "deleted"}, "403": {"description": "not an admin"},
                    "404": {"description": "not defined through the API"}, "409": {"description": "defined in the configuration file"}}))}
        },
        "/api/v1/environments/{name}/secrets/{secret}": setting_item(env_params(), "secret", "an environment secret; stored encrypted, released only to jobs past the gate, never returned"),
        "/api/v1/environments/{name}/variables/{var}": setting_item(env_params(), "var", "an environment variable"),
        "/api/v1/runs/{id}/approve": decision("Approve", "approve"),
        "/api/v1/runs/{id}/reject": decision("Reject", "reject"),
        "/api/v1/deployments": {"get": {
            "summary": "Deployment records, newest first",
            "parameters": [
                repository_query(),
                {"name": "environment", "in": "query", "schema": {"type": "string"}},
                {"name": "run", "in": "query", "schema": {"type": "integer"}},
                {"name": "status", "in": "query", "schema": {"type": "string"}, "description": "comma-separated statuses, e.g. waiting,in_progress"},
                {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 50}}
            ],
            "responses": with_errors(json!({"200": {"description": "deployments", "content": list_of("Deployment")},
                "400": {"description": "unknown status"}}))
        }},
        "/api/v1/deployments/{id}": {"get": {
            "summary": "One deployment with its approvals and audit trail", "parameters": id_param(),
            "responses": with_errors(json!({"200": {"description": "the deployment", "content": json_of("DeploymentDetail")}}))
        }},
        "/api/v1/deployments/rollback": {"post": {
            "summary": "Roll an environment back to an earlier successful deployment (maintainer or admin): starts a run that redeploys its commit and digests",
            "requestBody": {"required": true, "content": json_of("RollbackRequest")},
            "responses": with_errors(json!({"201": {"description": "the rollback run", "content": json_of("RollbackReply")},
                "400": {"description": "invalid field (named in the error)"}, "403": {"description": "viewer"},
                "409": {"description": "no earlier successful deployment to go back to"}}))
        }},
        "/api/v1/audit": {"get": {
            "summary": "The audit trail of deployments and decisions, newest first",
            "parameters": [
                {"name": "environment", "in": "query", "schema": {"type": "string"}},
                {"name": "deployment", "in": "query", "schema": {"type": "integer"}},
                {"name": "run", "in": "query", "schema": {"type": "integer"}},
                {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 5000, "default": 200}}
            ],
            "responses": with_errors(json!({"200": {"description": "entries", "content": list_of("Audit")}}))
        }},
        "/api/v1/gitops/report": {"post": {
            "summary": "A GitOps agent reports one app's status and sync history (agent registration token, or a user token that may write)",
            "requestBody": {"required": true, "content": json_of("GitopsReport")},
            "responses": with_errors(json!({"200": {"description": "recorded", "content": json_of("GitopsRecorded")},
                "400": {"description": "invalid field (named in the error)"}, "403": {"description": "viewer"}}))
        }},
        "/api/v1/gitops/apps": {"get": {
            "summary": "Every GitOps app's last reported status",
            "responses": with_errors(json!({"200": {"description": "apps", "content": list_of("GitopsApp")}}))
        }},
        "/api/v1/gitops/syncs": {"get": {
            "summary": "GitOps sync history, newest first; source_commit joins a CI run's commit to the sync of the promote commit that carried it",
            "parameters": [
                {"name": "agent", "in": "query", "schema": {"type": "string"}},
                {"name": "app", "in": "query", "schema": {"type": "string"}},
                {"name": "revision", "in": "query", "schema": {"type": "string"}},
                {"name": "source_commit", "in": "query", "schema": {"type": "string"}},
                {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 500, "default": 50}}
            ],
            "responses": with_errors(json!({"200": {"description": "syncs", "content": list_of("GitopsSync")}}))
        }},
        "/api/v1/openapi.json": {"get": {
            "summary": "This document", "security": [],
            "responses": {"200": {"description": "the OpenAPI 3.1 document", "content": {"application/json": {"schema": {"type": "object"}}}}}
        }}
    })
}

fn repo_params() -> Value {
    json!([
        {"name": "owner", "in": "path", "required": true, "schema": {"type": "string"}},
        {"name": "name", "in": "path", "required": true, "schema": {"type": "string"}}
    ])
}

fn repository_query() -> Value {
    json!({"name": "repository", "in": "query", "schema": {"type": "string"}, "description": "owner/name"})
}

/// `POST /api/v1/runs/{id}/approve|reject`.
fn decision(verb: &str, action: &str) -> Value {
    json!({"post": {
        "summary": format!("{verb} a run's deployments waiting for review in one environment (a reviewer of it); the audit trail records refusals too"),
        "parameters": id_param(),
        "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/DecisionRequest"}}}},
        "responses": with_errors(json!({
            "200": {"description": format!("the deployments after the {action}"), "content": {"application/json": {"schema": {"$ref": "#/components/schemas/DecisionReply"}}}},
            "403": {"description": "not a reviewer, self-approval not allowed, or no users configured"},
            "409": {"description": "nothing waits in that environment, or the caller already decided"}
        }))
    }})
}

fn org_params() -> Value {
    json!([{"name": "org", "in": "path", "required": true, "schema": {"type": "string"}}])
}

/// `PUT`/`DELETE` of one secret or variable.
/// The path and query parameters of an environment defined through the API.
fn env_params() -> Value {
    json!([{"name": "name", "in": "path", "required": true, "schema": {"type": "string"}}, repository_query()])
}

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
