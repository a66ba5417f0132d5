//! Holds the fake to GitHub's published contract: every response of a broad
//! scenario is validated (status and body) against the operation of GitHub's
//! OpenAPI description (npm package `@octokit/openapi`, installed by
//! `tests/fake-github/openapi/install.sh`), and so is every request body the
//! fake accepts. Root-style requests are checked against the github.com
//! description (`ghec` for enterprise endpoints, which github.com's own file
//! leaves out); `/api/v3` requests against the newest GHES description.

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

use common::*;
use fake_github::{AppSpec, InstallationSpec};
use reqwest::Method;
use serde_json::{Map, Value, json};

// ----- loading and translating the description ------------------------------

fn openapi_dir() -> PathBuf {
    if let Ok(d) = std::env::var("RUNNERPOOL_OPENAPI_DIR") {
        return PathBuf::from(d);
    }
    let cache = std::env::var("RUNNERPOOL_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            std::env::var("XDG_CACHE_HOME")
                .map(PathBuf::from)
                .unwrap_or_else(|_| {
                    PathBuf::from(std::env::var("HOME").expect("HOME")).join(".cache")
                })
                .join("runnerpool-operator")
        });
    cache.join("openapi/node_modules/@octokit/openapi/generated")
}

struct Spec {
    name: String,
    doc: Value,
    validators: Mutex<HashMap<String, Arc<jsonschema::Validator>>>,
}

struct Specs {
    dotcom: Spec,
    ghec: Spec,
    ghes: Spec,
}

fn load(dir: &std::path::Path, file: &str) -> Spec {
    let path = dir.join(file);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "GitHub's OpenAPI description is missing ({}: {e}).\n\
             Install it with tests/fake-github/openapi/install.sh (scripts/test.sh runs it), \
             or point RUNNERPOOL_OPENAPI_DIR at the directory holding api.github.com.json.",
            path.display()
        )
    });
    Spec {
        name: file.to_string(),
        doc: serde_json::from_str(&text).expect("the OpenAPI description is JSON"),
        validators: Mutex::new(HashMap::new()),
    }
}

/// Loaded once per test binary: the files are tens of MB.
fn specs() -> &'static Specs {
    static SPECS: OnceLock<Specs> = OnceLock::new();
    SPECS.get_or_init(|| {
        let dir = openapi_dir();
        assert!(
            dir.join("api.github.com.json").is_file(),
            "GitHub's OpenAPI description is missing: {} has no api.github.com.json.\n\
             Install it with tests/fake-github/openapi/install.sh (scripts/test.sh runs it), \
             or set RUNNERPOOL_OPENAPI_DIR.",
            dir.display()
        );
        // The newest GHES description in the package (ghes-3.NN.json).
        let mut ghes: Vec<(u32, u32, String)> = std::fs::read_dir(&dir)
            .expect("read openapi dir")
            .filter_map(|e| {
                let n = e.ok()?.file_name().into_string().ok()?;
                let v = n.strip_prefix("ghes-")?.strip_suffix(".json")?;
                let (maj, min) = v.split_once('.')?;
                Some((maj.parse().ok()?, min.parse().ok()?, n.clone()))
            })
            .collect();
        ghes.sort();
        let (maj, min, ghes_file) = ghes.pop().expect("a ghes-*.json description");
        assert!(
            (maj, min) >= (3, 10),
            "need a GHES description >= 3.10, got {maj}.{min}"
        );
        Specs {
            dotcom: load(&dir, "api.github.com.json"),
            ghec: load(&dir, "ghec.json"),
            ghes: load(&dir, &ghes_file),
        }
    })
}

fn pointer<'a>(doc: &'a Value, r: &str) -> &'a Value {
    doc.pointer(r.strip_prefix('#').expect("local $ref"))
        .unwrap_or_else(|| panic!("dangling $ref {r}"))
}

/// Follows `$ref`s at the top of an object (responses, request bodies).
fn deref<'a>(doc: &'a Value, mut v: &'a Value) -> &'a Value {
    while let Some(r) = v.get("$ref").and_then(Value::as_str) {
        v = pointer(doc, r);
    }
    v
}

/// OpenAPI 3.0 schema → JSON Schema draft 4: `$ref`s inlined (a reference
/// back into a schema being expanded becomes `{}`), `nullable` turned into
/// `anyOf [null, …]`, annotation-only keywords dropped.
fn translate(doc: &Value, schema: &Value, stack: &mut Vec<String>) -> Value {
    let Value::Object(m) = schema else {
        return schema.clone();
    };
    if let Some(r) = m.get("$ref").and_then(Value::as_str) {
        if stack.iter().any(|s| s == r) {
            return json!({});
        }
        stack.push(r.to_string());
        let out = translate(doc, pointer(doc, r), stack);
        stack.pop();
        return out;
    }
    let mut out = Map::new();
    for (k, v) in m {
        match k.as_str() {
            "nullable" | "example" | "examples" | "description" | "readOnly" | "writeOnly"
            | "deprecated" | "xml" | "externalDocs" | "discriminator" | "title" | "default" => {}
            k if k.starts_with("x-") => {}
            "properties" | "patternProperties" => {
                let props = v
                    .as_object()
                    .expect("properties object")
                    .iter()
                    .map(|(p, s)| (p.clone(), translate(doc, s, stack)))
                    .collect();
                out.insert(k.to_string(), Value::Object(props));
            }
            "items" | "additionalProperties" | "not" if v.is_object() => {
                out.insert(k.to_string(), translate(doc, v, stack));
            }
            "allOf" | "anyOf" | "oneOf" => {
                let list = v
                    .as_array()
                    .expect("schema list")
                    .iter()
                    .map(|s| translate(doc, s, stack))
                    .collect();
                out.insert(k.to_string(), Value::Array(list));
            }
            _ => {
                out.insert(k.to_string(), v.clone());
            }
        }
    }
    let out = Value::Object(out);
    if m.get("nullable") == Some(&Value::Bool(true)) {
        json!({"anyOf": [{"type": "null"}, out]})
    } else {
        out
    }
}

impl Spec {
    /// The path template of the operation for `method path`, preferring
    /// literal segments over parameters.
    fn operation(&self, method: &str, path: &str) -> Option<(String, &Value)> {
        let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        let mut best: Option<(usize, String, &Value)> = None;
        for (tpl, item) in self.doc["paths"].as_object().expect("paths") {
            let Some(op) = item.get(method.to_lowercase()) else {
                continue;
            };
            let t: Vec<&str> = tpl.trim_start_matches('/').split('/').collect();
            if t.len() != segs.len() {
                continue;
            }
            let mut literal = 0;
            let ok = t.iter().zip(&segs).all(|(a, b)| {
                if a.starts_with('{') && a.ends_with('}') {
                    !b.is_empty()
                } else {
                    literal += 1;
                    a == b
                }
            });
            if ok && best.as_ref().is_none_or(|(l, _, _)| literal > *l) {
                best = Some((literal, tpl.clone(), op));
            }
        }
        best.map(|(_, t, op)| (t, op))
    }

    fn validator(&self, key: &str, schema: &Value) -> Arc<jsonschema::Validator> {
        if let Some(v) = self.validators.lock().unwrap().get(key) {
            return v.clone();
        }
        let translated = translate(&self.doc, schema, &mut Vec::new());
        let v = Arc::new(
            jsonschema::draft4::options()
                .should_validate_formats(true)
                .build(&translated)
                .unwrap_or_else(|e| panic!("{}: cannot compile schema {key}: {e}", self.name)),
        );
        self.validators
            .lock()
            .unwrap()
            .insert(key.to_string(), v.clone());
        v
    }

    fn errors(&self, key: &str, schema: &Value, instance: &Value) -> Vec<String> {
        let v = self.validator(key, schema);
        v.iter_errors(instance)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .take(5)
            .collect()
    }

    /// Problems with an answer, empty if it conforms.
    fn check_response(&self, method: &str, path: &str, status: u16, body: &Value) -> Vec<String> {
        let Some((tpl, op)) = self.operation(method, path) else {
            return vec![format!(
                "{method} {path}: no such operation in {}",
                self.name
            )];
        };
        let key = format!("{method} {tpl} {status}");
        if status == 304 {
            return if body.is_null() {
                vec![]
            } else {
                vec![format!("{key}: 304 with a body")]
            };
        }
        let documented = op["responses"].get(status.to_string());
        let schema = match documented {
            Some(resp) => {
                let resp = deref(&self.doc, resp);
                match resp.pointer("/content/application~1json/schema") {
                    Some(s) => s.clone(),
                    None => {
                        return if body.is_null() {
                            vec![]
                        } else {
                            vec![format!("{key}: documented without a body, got {body}")]
                        };
                    }
                }
            }
            // Statuses GitHub documents for every endpoint (authentication,
            // permissions, missing resources, rate limits, bad JSON).
            None => match status {
                400 | 401 | 403 | 404 | 429 => json!({"$ref": "#/components/schemas/basic-error"}),
                422 => json!({"anyOf": [
                    {"$ref": "#/components/schemas/validation-error"},
                    {"$ref": "#/components/schemas/validation-error-simple"}
                ]}),
                _ => {
                    return vec![format!(
                        "{key}: status {status} is not documented for this operation"
                    )];
                }
            },
        };
        if body.is_null() {
            return vec![format!("{key}: expected a JSON body")];
        }
        self.errors(&key, &schema, body)
            .into_iter()
            .map(|e| format!("{key} ({}): {e}", self.name))
            .collect()
    }

    fn check_request_body(&self, method: &str, path: &str, body: &Value) -> Vec<String> {
        let Some((tpl, op)) = self.operation(method, path) else {
            return vec![format!(
                "{method} {path}: no such operation in {}",
                self.name
            )];
        };
        let key = format!("{method} {tpl} request");
        let Some(rb) = op.get("requestBody") else {
            return vec![format!("{key}: the operation takes no body")];
        };
        let rb = deref(&self.doc, rb);
        let schema = rb
            .pointer("/content/application~1json/schema")
            .expect("JSON request body")
            .clone();
        self.errors(&key, &schema, body)
            .into_iter()
            .map(|e| format!("{key} ({}): {e}", self.name))
            .collect()
    }
}

// ----- the scenario ------------------------------------------------------------

#[derive(Clone, Copy, PartialEq)]
enum Flavor {
    Dotcom,
    Ghes,
}

struct Checker {
    fake: fake_github::FakeGitHub,
    client: reqwest::Client,
    flavor: Flavor,
    failures: Vec<String>,
    checked: usize,
    /// Operations (`METHOD /template`) answered 2xx, per description file.
    covered: BTreeMap<String, BTreeSet<String>>,
}

impl Checker {
    fn spec_for(&self, path: &str) -> &'static Spec {
        let s = specs();
        match self.flavor {
            Flavor::Ghes => &s.ghes,
            Flavor::Dotcom if path.starts_with("/enterprises/") => &s.ghec,
            Flavor::Dotcom => &s.dotcom,
        }
    }

    async fn req(
        &mut self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        let base = match self.flavor {
            Flavor::Dotcom => self.fake.base_url(),
            Flavor::Ghes => self.fake.ghes_url(),
        };
        let r = call(
            &self.client,
            method.clone(),
            &format!("{base}{path}"),
            token,
            body.as_ref(),
        )
        .await;
        let (status, v) = json_of(r).await;
        let bare = path.split('?').next().unwrap();
        let spec = self.spec_for(bare);
        let m = method.as_str();
        self.checked += 1;
        self.failures
            .extend(spec.check_response(m, bare, status, &v));
        if (200..300).contains(&status) {
            if let Some(b) = &body {
                self.failures.extend(spec.check_request_body(m, bare, b));
            }
            if let Some((tpl, _)) = spec.operation(m, bare) {
                self.covered
                    .entry(spec.name.clone())
                    .or_default()
                    .insert(format!("{m} {tpl}"));
            }
        }
        (status, v)
    }

    /// A body the description rejects must be refused by the fake too.
    async fn expect_refused(&mut self, method: Method, path: &str, token: &str, body: Value) {
        let spec = self.spec_for(path);
        assert!(
            !spec
                .check_request_body(method.as_str(), path, &body)
                .is_empty(),
            "test bug: {body} is valid for {method} {path}"
        );
        let (s, v) = self
            .req(method.clone(), path, Some(token), Some(body.clone()))
            .await;
        if !(400..500).contains(&s) {
            self.failures.push(format!(
                "{method} {path}: accepted {body}, which the description forbids ({s} {v})"
            ));
        }
    }
}

async fn scenario(flavor: Flavor) -> Checker {
    let fake = start().await;
    let pem = app_private_key();
    fake.add_app(AppSpec {
        app_id: 31337,
        client_id: None,
        key_pem: pem.to_string(),
        installations: vec![InstallationSpec::new(5, Some("acme"))],
    })
    .unwrap();
    let mut c = Checker {
        fake: fake.clone(),
        client: client(),
        flavor,
        failures: vec![],
        checked: 0,
        covered: BTreeMap::new(),
    };
    let scopes: [(&str, &str); 3] = [
        ("/orgs/acme", ORG_TOKEN),
        ("/repos/acme/app", ORG_TOKEN),
        ("/enterprises/bigcorp", ENT_TOKEN),
    ];
    for (scope, tok) in scopes {
        let t = Some(tok);
        let runners = format!("{scope}/actions/runners");
        c.req(Method::GET, &runners, t, None).await;
        let mut ids = vec![];
        for i in 0..3 {
            let body = json!({"name": format!("r{i}"), "runner_group_id": 1, "labels": ["self-hosted", "linux", "X64", format!("l{i}")], "work_folder": "_work"});
            let (s, v) = c
                .req(
                    Method::POST,
                    &format!("{runners}/generate-jitconfig"),
                    t,
                    Some(body),
                )
                .await;
            assert_eq!(s, 201, "{v}");
            ids.push(v["runner"]["id"].as_u64().unwrap());
        }
        let minimal = json!({"name": "minimal", "runner_group_id": 1, "labels": ["x"]});
        c.req(
            Method::POST,
            &format!("{runners}/generate-jitconfig"),
            t,
            Some(minimal.clone()),
        )
        .await;
        // 409, 404 (group), 422 (semantic), and bodies the schema forbids.
        c.req(
            Method::POST,
            &format!("{runners}/generate-jitconfig"),
            t,
            Some(minimal),
        )
        .await;
        c.req(
            Method::POST,
            &format!("{runners}/generate-jitconfig"),
            t,
            Some(json!({"name": "g", "runner_group_id": 77, "labels": ["x"]})),
        )
        .await;
        c.req(
            Method::POST,
            &format!("{runners}/generate-jitconfig"),
            t,
            Some(json!({"name": "n".repeat(65), "runner_group_id": 1, "labels": ["x"]})),
        )
        .await;
        c.req(
            Method::POST,
            &format!("{runners}/generate-jitconfig"),
            t,
            Some(json!({"name": "long", "runner_group_id": 1, "labels": ["x".repeat(257)]})),
        )
        .await;
        c.expect_refused(
            Method::POST,
            &format!("{runners}/generate-jitconfig"),
            tok,
            json!({"name": "a", "labels": ["x"]}),
        )
        .await;
        c.expect_refused(
            Method::POST,
            &format!("{runners}/generate-jitconfig"),
            tok,
            json!({"name": "a", "runner_group_id": 1, "labels": []}),
        )
        .await;
        let many: Vec<String> = (0..101).map(|i| format!("m{i}")).collect();
        c.expect_refused(
            Method::POST,
            &format!("{runners}/generate-jitconfig"),
            tok,
            json!({"name": "a", "runner_group_id": 1, "labels": many}),
        )
        .await;
        c.expect_refused(
            Method::POST,
            &format!("{runners}/generate-jitconfig"),
            tok,
            json!({"runner_group_id": 1, "labels": ["x"]}),
        )
        .await;
        c.expect_refused(
            Method::POST,
            &format!("{runners}/generate-jitconfig"),
            tok,
            json!({"name": 5, "runner_group_id": 1, "labels": ["x"]}),
        )
        .await;
        // Lists, pages, filters, conditional requests.
        c.req(
            Method::GET,
            &format!("{runners}?per_page=2&page=1"),
            t,
            None,
        )
        .await;
        c.req(
            Method::GET,
            &format!("{runners}?per_page=2&page=3"),
            t,
            None,
        )
        .await;
        c.req(Method::GET, &format!("{runners}?name=r1"), t, None)
            .await;
        c.req(Method::GET, &format!("{runners}/downloads"), t, None)
            .await;
        c.req(
            Method::POST,
            &format!("{runners}/registration-token"),
            t,
            None,
        )
        .await;
        c.req(Method::POST, &format!("{runners}/remove-token"), t, None)
            .await;
        let one = format!("{runners}/{}", ids[0]);
        fake.set_online(ids[0], true).unwrap();
        c.req(Method::GET, &one, t, None).await;
        c.req(Method::GET, &format!("{runners}/999999"), t, None)
            .await;
        // Labels.
        let labels = format!("{one}/labels");
        c.req(Method::GET, &labels, t, None).await;
        c.req(
            Method::POST,
            &labels,
            t,
            Some(json!({"labels": ["gpu", "fast"]})),
        )
        .await;
        c.req(
            Method::PUT,
            &labels,
            t,
            Some(json!({"labels": ["gpu", "big"]})),
        )
        .await;
        c.req(Method::PUT, &labels, t, Some(json!({"labels": []})))
            .await;
        c.req(Method::POST, &labels, t, Some(json!({"labels": ["again"]})))
            .await;
        c.req(Method::DELETE, &format!("{labels}/again"), t, None)
            .await;
        c.req(Method::DELETE, &format!("{labels}/missing"), t, None)
            .await;
        c.req(Method::DELETE, &format!("{labels}/self-hosted"), t, None)
            .await;
        c.req(
            Method::POST,
            &labels,
            t,
            Some(json!({"labels": ["x".repeat(300)]})),
        )
        .await;
        c.req(Method::DELETE, &labels, t, None).await;
        c.req(Method::GET, &format!("{runners}/999999/labels"), t, None)
            .await;
        c.expect_refused(Method::POST, &labels, tok, json!({"labels": []}))
            .await;
        c.expect_refused(Method::PUT, &labels, tok, json!({})).await;
        // Delete: busy (422), idle (204), unknown (404).
        let repo = "acme/app";
        let job = fake.queue_job(repo, &["self-hosted"]);
        let busy = fake.runner(ids[0]).unwrap().busy;
        if busy {
            c.req(Method::DELETE, &one, t, None).await;
        }
        c.req(Method::DELETE, &format!("{runners}/{}", ids[1]), t, None)
            .await;
        c.req(Method::DELETE, &format!("{runners}/{}", ids[1]), t, None)
            .await;
        if let Ok(j) = job {
            fake.finish_job(j).unwrap();
        }
        // Authentication and permission failures.
        c.req(Method::GET, &runners, None, None).await;
        c.req(Method::GET, &runners, Some("ghp_nope"), None).await;
        c.req(Method::GET, &runners, Some(WEAK_TOKEN), None).await;
    }
    c.req(
        Method::GET,
        "/orgs/nobody/actions/runners",
        Some(ORG_TOKEN),
        None,
    )
    .await;

    // Runner groups, organization and enterprise.
    for (owner, tok, access, ids_field) in [
        (
            "/orgs/acme",
            ORG_TOKEN,
            "repositories",
            "selected_repository_ids",
        ),
        (
            "/enterprises/bigcorp",
            ENT_TOKEN,
            "organizations",
            "selected_organization_ids",
        ),
    ] {
        let t = Some(tok);
        let groups = format!("{owner}/actions/runner-groups");
        let target = if owner.starts_with("/orgs") {
            fake.add_repo("acme", "lib")
        } else {
            fake.add_org("acme")
        };
        c.req(Method::GET, &groups, t, None).await;
        c.req(Method::GET, &format!("{groups}?per_page=1&page=1"), t, None)
            .await;
        let (s, g) = c
            .req(Method::POST, &groups, t, Some(json!({"name": "g1", "visibility": "selected", ids_field: [target], "allows_public_repositories": false, "restricted_to_workflows": false, "selected_workflows": []})))
            .await;
        assert_eq!(s, 201, "{g}");
        let gid = g["id"].as_u64().unwrap();
        c.req(Method::POST, &groups, t, Some(json!({"name": "g2"})))
            .await;
        c.req(Method::POST, &groups, t, Some(json!({"name": "g1"})))
            .await;
        c.expect_refused(Method::POST, &groups, tok, json!({"visibility": "all"}))
            .await;
        c.expect_refused(
            Method::POST,
            &groups,
            tok,
            json!({"name": "bad", "visibility": "nobody"}),
        )
        .await;
        let one = format!("{groups}/{gid}");
        c.req(Method::GET, &one, t, None).await;
        c.req(Method::GET, &format!("{groups}/4242"), t, None).await;
        c.req(
            Method::PATCH,
            &one,
            t,
            Some(json!({"name": "g1-renamed", "visibility": "selected"})),
        )
        .await;
        c.req(Method::GET, &format!("{one}/{access}"), t, None)
            .await;
        c.req(
            Method::PUT,
            &format!("{one}/{access}"),
            t,
            Some(json!({ids_field: [target]})),
        )
        .await;
        c.req(Method::DELETE, &format!("{one}/{access}/{target}"), t, None)
            .await;
        c.req(Method::PUT, &format!("{one}/{access}/{target}"), t, None)
            .await;
        let scope_runners = format!("{owner}/actions/runners/generate-jitconfig");
        let (_, v) = c
            .req(
                Method::POST,
                &scope_runners,
                t,
                Some(json!({"name": "in-group", "runner_group_id": gid, "labels": ["x"]})),
            )
            .await;
        let rid = v["runner"]["id"].as_u64().unwrap();
        c.req(Method::GET, &format!("{one}/runners"), t, None).await;
        c.req(
            Method::PUT,
            &format!("{one}/runners"),
            t,
            Some(json!({"runners": [rid]})),
        )
        .await;
        c.req(Method::DELETE, &format!("{one}/runners/{rid}"), t, None)
            .await;
        c.req(Method::PUT, &format!("{one}/runners/{rid}"), t, None)
            .await;
        if owner.starts_with("/orgs") {
            // Repository ids, as a runner group's access list needs them.
            let (s, repo) = c.req(Method::GET, "/repos/acme/lib", t, None).await;
            assert_eq!((s, repo["id"].as_u64()), (200, Some(target)), "{repo}");
            c.req(Method::GET, "/repos/acme/nothing", t, None).await;
            c.req(
                Method::GET,
                &format!("{groups}?visible_to_repository=lib"),
                t,
                None,
            )
            .await;
            if c.spec_for(&groups)
                .operation("GET", &format!("{one}/hosted-runners"))
                .is_some()
            {
                c.req(Method::GET, &format!("{one}/hosted-runners"), t, None)
                    .await;
            }
        } else {
            c.req(
                Method::GET,
                &format!("{groups}?visible_to_organization=acme"),
                t,
                None,
            )
            .await;
        }
        c.req(Method::DELETE, &one, t, None).await;
        c.req(Method::DELETE, &format!("{groups}/1"), t, None).await;
    }

    // GitHub App: installation token, then use it.
    let now = now();
    let jwt = jwt(
        pem,
        &json!({"iat": now - 60, "exp": now + 500, "iss": 31337}),
    );
    let (s, v) = c
        .req(
            Method::POST,
            "/app/installations/5/access_tokens",
            Some(&jwt),
            None,
        )
        .await;
    assert_eq!(s, 201, "{v}");
    let inst = v["token"].as_str().unwrap().to_string();
    c.req(
        Method::POST,
        "/app/installations/5/access_tokens",
        Some(&jwt),
        Some(json!({"permissions": {"administration": "read"}})),
    )
    .await;
    c.req(
        Method::POST,
        "/app/installations/5/access_tokens",
        Some(&jwt),
        Some(json!({"permissions": {"contents": "write"}})),
    )
    .await;
    c.req(
        Method::POST,
        "/app/installations/6/access_tokens",
        Some(&jwt),
        None,
    )
    .await;
    c.req(
        Method::POST,
        "/app/installations/5/access_tokens",
        Some(ORG_TOKEN),
        None,
    )
    .await;
    c.req(Method::GET, "/orgs/acme/actions/runners", Some(&inst), None)
        .await;
    c.req(
        Method::GET,
        "/enterprises/bigcorp/actions/runners",
        Some(&inst),
        None,
    )
    .await;
    c.req(Method::GET, "/rate_limit", Some(ORG_TOKEN), None)
        .await;
    hooks_and_jobs(&mut c, &fake, &jwt).await;
    // Rate limits.
    fake.exhaust_rate_limit(&fake.token_key(REPO_TOKEN));
    c.req(
        Method::GET,
        "/repos/acme/app/actions/runners",
        Some(REPO_TOKEN),
        None,
    )
    .await;
    fake.secondary_limit(fake_github::SecondaryLimit::next_requests(1, 5));
    c.req(
        Method::GET,
        "/repos/acme/app/actions/runners",
        Some(ORG_TOKEN),
        None,
    )
    .await;
    fake.shutdown().await;
    c
}

/// The webhook's delivery log (organization, repository and App hooks) and
/// the workflow-job read, with deliveries that were taken, refused and lost.
async fn hooks_and_jobs(c: &mut Checker, fake: &fake_github::FakeGitHub, jwt: &str) {
    const HOOK_TOKEN: &str = "ghp_hookadmin00000000000000000000000000";
    fake.add_token(HOOK_TOKEN, &["admin:org_hook", "admin:repo_hook"]);
    let receiver = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/webhook", receiver.local_addr().unwrap());
    let taken = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let answers = taken.clone();
    let app = axum::Router::new().route(
        "/webhook",
        axum::routing::post(move || {
            let n = answers.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let status = if n.is_multiple_of(2) { 202 } else { 503 };
            async move { axum::http::StatusCode::from_u16(status).unwrap() }
        }),
    );
    tokio::spawn(async move { axum::serve(receiver, app).await });
    fake.set_webhook(Some(fake_github::WebhookConfig {
        url,
        secret: Some("s".into()),
    }));
    let before = fake.webhook_deliveries().len();
    fake.drop_next_webhooks(1);
    let mut jobs = vec![];
    for _ in 0..4 {
        jobs.push(fake.queue_job("acme/app", &["linux"]).unwrap());
    }
    let sent = fake
        .wait_for_webhooks(before + 4, std::time::Duration::from_secs(10))
        .await;
    assert!(sent.len() >= before + 4, "{sent:?}");
    let t = Some(HOOK_TOKEN);
    for (base, token) in [
        ("/orgs/acme/hooks/1/deliveries", t),
        ("/repos/acme/app/hooks/1/deliveries", t),
        ("/app/hook/deliveries", Some(jwt)),
    ] {
        let (s, page) = c
            .req(Method::GET, &format!("{base}?per_page=2"), token, None)
            .await;
        assert_eq!(s, 200, "{base}: {page}");
        assert_eq!(page.as_array().unwrap().len(), 2, "{page}");
        let last = page[1]["id"].as_u64().unwrap();
        let (s, failed) = c
            .req(Method::GET, &format!("{base}?status=failure"), token, None)
            .await;
        assert_eq!(s, 200);
        assert!(
            failed.as_array().unwrap().len() >= 2,
            "refused and lost: {failed}"
        );
        let (s, one) = c
            .req(Method::GET, &format!("{base}/{last}"), token, None)
            .await;
        assert_eq!(s, 200, "{one}");
        assert_eq!(one["request"]["payload"]["action"], "queued", "{one}");
        let (s, _) = c
            .req(
                Method::POST,
                &format!("{base}/{last}/attempts"),
                token,
                None,
            )
            .await;
        assert_eq!(s, 202);
        c.req(Method::GET, &format!("{base}/999999"), token, None)
            .await;
        c.req(Method::GET, &format!("{base}?status=sideways"), token, None)
            .await;
    }
    c.req(Method::GET, "/orgs/acme/hooks/2/deliveries", t, None)
        .await;
    c.req(
        Method::GET,
        "/orgs/acme/hooks/1/deliveries",
        Some(ORG_TOKEN),
        None,
    )
    .await;
    c.req(Method::GET, "/app/hook/deliveries", t, None).await;
    let job = format!("/repos/acme/app/actions/jobs/{}", jobs[0]);
    let (s, read) = c.req(Method::GET, &job, Some(REPO_TOKEN), None).await;
    assert_eq!(
        (s, read["status"].as_str()),
        (200, Some("queued")),
        "{read}"
    );
    c.req(
        Method::GET,
        "/repos/acme/app/actions/jobs/999999",
        Some(REPO_TOKEN),
        None,
    )
    .await;
    c.req(Method::GET, &job, Some(WEAK_TOKEN), None).await;
    fake.set_webhook(None);
}

/// The runner and runner-group operations a description has under the
/// given path prefixes (what the scenario must cover).
fn runner_operations(spec: &Spec, prefixes: &[&str]) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (tpl, item) in spec.doc["paths"].as_object().unwrap() {
        // `GET /repos/{owner}/{repo}` gives the repository ids runner groups grant access to.
        // The delivery log and the job read recover demand (issue 20).
        let relevant = (tpl.contains("/actions/runners")
            || tpl.contains("/actions/runner-groups")
            || tpl == "/repos/{owner}/{repo}"
            || tpl.contains("/hooks/{hook_id}/deliveries")
            || tpl == "/repos/{owner}/{repo}/actions/jobs/{job_id}")
            && !tpl.contains("deprecations")
            && prefixes.iter().any(|p| tpl.starts_with(p));
        if !relevant {
            continue;
        }
        for m in ["get", "post", "put", "patch", "delete"] {
            let repository_write = tpl == "/repos/{owner}/{repo}" && m != "get";
            if item.get(m).is_some() && !repository_write {
                out.insert(format!("{} {tpl}", m.to_uppercase()));
            }
        }
    }
    out
}

fn report(c: &Checker, label: &str, required: &[(&Spec, &[&str])]) {
    let mut missing = vec![];
    for (spec, prefixes) in required {
        let covered = c.covered.get(&spec.name).cloned().unwrap_or_default();
        for op in runner_operations(spec, prefixes) {
            if !covered.contains(&op) {
                missing.push(format!("{}: {op}", spec.name));
            }
        }
    }
    println!("{label}: {} responses validated", c.checked);
    assert!(
        c.failures.is_empty(),
        "{label}: {} answers do not match GitHub's OpenAPI description:\n{}",
        c.failures.len(),
        c.failures.join("\n")
    );
    assert!(
        missing.is_empty(),
        "{label}: operations never exercised with success:\n{}",
        missing.join("\n")
    );
}

#[tokio::test]
async fn github_com_style_answers_match_the_description() {
    let c = scenario(Flavor::Dotcom).await;
    let s = specs();
    report(
        &c,
        "github.com",
        &[
            (&s.dotcom, &["/orgs/", "/repos/"]),
            (&s.ghec, &["/enterprises/"]),
        ],
    );
}

#[tokio::test]
async fn ghes_style_answers_match_the_description() {
    let c = scenario(Flavor::Ghes).await;
    let s = specs();
    report(
        &c,
        &s.ghes.name,
        &[(&s.ghes, &["/orgs/", "/repos/", "/enterprises/"])],
    );
}

/// The checks themselves must be able to fail.
#[test]
fn validation_catches_wrong_answers() {
    let s = &specs().dotcom;
    let path = "/orgs/acme/actions/runners/1";
    let good = json!({"id": 1, "name": "r", "os": "linux", "status": "online", "busy": false, "labels": [{"id": 1, "name": "self-hosted", "type": "read-only"}]});
    assert!(s.check_response("GET", path, 200, &good).is_empty());
    let mut no_os = good.clone();
    no_os.as_object_mut().unwrap().remove("os");
    assert!(!s.check_response("GET", path, 200, &no_os).is_empty());
    let mut bad_type = good.clone();
    bad_type["labels"][0]["type"] = json!("builtin");
    assert!(!s.check_response("GET", path, 200, &bad_type).is_empty());
    let mut busy_string = good.clone();
    busy_string["busy"] = json!("no");
    assert!(!s.check_response("GET", path, 200, &busy_string).is_empty());
    // Undocumented statuses are refused; documented error shapes are checked.
    assert!(
        !s.check_response("GET", path, 409, &json!({"message": "x"}))
            .is_empty()
    );
    let jit = "/orgs/acme/actions/runners/generate-jitconfig";
    assert!(
        !s.check_response(
            "POST",
            jit,
            422,
            &json!({"message": "x", "documentation_url": "d", "errors": [{"code": "x"}]})
        )
        .is_empty()
    );
    assert!(
        s.check_response(
            "POST",
            jit,
            422,
            &json!({"message": "x", "documentation_url": "d", "errors": ["x"]})
        )
        .is_empty()
    );
    assert!(
        !s.check_response("POST", jit, 201, &json!({"runner": good}))
            .is_empty(),
        "missing encoded_jit_config"
    );
    // Nullable translation: version may be null, not a number.
    let mut v = good.clone();
    v["version"] = Value::Null;
    assert!(s.check_response("GET", path, 200, &v).is_empty());
    v["version"] = json!(3);
    assert!(!s.check_response("GET", path, 200, &v).is_empty());
    assert!(
        !s.check_request_body("POST", jit, &json!({"name": "a", "runner_group_id": 1}))
            .is_empty()
    );
    assert!(
        s.operation("GET", "/orgs/acme/actions/runners/downloads")
            .unwrap()
            .0
            .ends_with("/downloads")
    );
}
