//! Scale-set CRUD, runner groups, JIT configurations and agents, as a
//! scope's admin token sees them. Scale-set runners are ordinary runners of
//! the scope (they show in its REST runner list) that carry the scale set's
//! id.

use serde_json::{Map, Value, json};

use super::{ScaleSet, ServiceError};
use crate::model::{Ctx, Model, Runner, Scope, ScopeKey};
use crate::util;

/// The default runner group, as the service names it.
const DEFAULT_GROUP_NAME: &str = "default";

/// The body as a JSON object (400 otherwise, as the service answers).
pub(crate) fn object(raw: &[u8]) -> Result<Map<String, Value>, ServiceError> {
    match serde_json::from_slice::<Value>(raw) {
        Ok(Value::Object(m)) => Ok(m),
        _ => Err(ServiceError::bad_request(
            "The request body must be a JSON object.",
        )),
    }
}

fn str_field<'a>(b: &'a Map<String, Value>, field: &str) -> Result<Option<&'a str>, ServiceError> {
    match b.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(ServiceError::bad_request(format!(
            "{field} must be a string."
        ))),
    }
}

fn u64_field(b: &Map<String, Value>, field: &str) -> Result<Option<u64>, ServiceError> {
    match b.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_u64()
            .map(Some)
            .ok_or_else(|| ServiceError::bad_request(format!("{field} must be an integer."))),
    }
}

fn disable_update(b: &Map<String, Value>) -> Option<bool> {
    b.get("RunnerSetting")
        .and_then(|s| s.get("disableUpdate"))
        .and_then(Value::as_bool)
}

fn agent_json(r: &Runner) -> Value {
    json!({
        "id": r.id,
        "name": r.name,
        "version": "",
        "enabled": true,
        "status": if r.online() { "online" } else { "offline" },
        "busy": r.busy,
        "ephemeral": r.ephemeral,
        "runnerScaleSetId": r.scale_set_id.unwrap_or(0),
        "labels": r.labels.iter().map(|l| json!({"name": l.name, "type": "system"})).collect::<Vec<_>>(),
    })
}

impl Model {
    /// `(id, name, default)` of the groups a scope's scale sets may use:
    /// the account's groups, or only the default one for a repository.
    fn service_groups(&self, key: &ScopeKey) -> Vec<(u64, String)> {
        match self.account(key) {
            Some(a) => a
                .groups
                .values()
                .map(|g| {
                    let name = if g.default {
                        DEFAULT_GROUP_NAME.to_string()
                    } else {
                        g.name.clone()
                    };
                    (g.id, name)
                })
                .collect(),
            None => vec![(1, DEFAULT_GROUP_NAME.to_string())],
        }
    }

    fn service_group(&self, key: &ScopeKey, id: u64) -> Result<String, ServiceError> {
        self.service_groups(key)
            .into_iter()
            .find(|(gid, _)| *gid == id)
            .map(|(_, name)| name)
            .ok_or_else(|| {
                ServiceError::new(
                    404,
                    "RunnerGroupNotFoundException",
                    format!("Runner group {id} not found."),
                )
            })
    }

    /// `GET _apis/runtime/runnergroups/?groupName=N`.
    pub(crate) fn service_runner_groups(&self, scope: &Scope, name: Option<&str>) -> Value {
        let key = scope.key();
        let runners = self
            .runner_set(&key)
            .map(|s| s.runners.values().collect::<Vec<_>>());
        let value: Vec<Value> = self
            .service_groups(&key)
            .into_iter()
            .filter(|(_, n)| name.is_none_or(|want| want.eq_ignore_ascii_case(n)))
            .map(|(id, n)| {
                let size = runners.as_ref().map_or(0, |rs| {
                    rs.iter().filter(|r| r.runner_group_id == id).count()
                });
                json!({"id": id, "name": n, "size": size, "isDefaultGroup": id == 1})
            })
            .collect();
        json!({"count": value.len(), "value": value})
    }

    /// A scale set the scope can see.
    pub(crate) fn scale_set_in(&self, scope: &Scope, id: u64) -> Result<&ScaleSet, ServiceError> {
        self.actions
            .scale_sets
            .get(&id)
            .filter(|s| s.scope.key() == scope.key())
            .ok_or_else(|| ServiceError::scale_set_not_found(id))
    }

    pub(crate) fn scale_set_json(&self, s: &ScaleSet, tenant_url: &str) -> Value {
        json!({
            "id": s.id,
            "name": s.name,
            "runnerGroupId": s.runner_group_id,
            "runnerGroupName": s.runner_group_name,
            "labels": s.labels.iter().map(|l| json!({"name": l, "type": "System"})).collect::<Vec<_>>(),
            "RunnerSetting": {"ephemeral": true, "isElastic": true, "disableUpdate": s.disable_update},
            "createdOn": s.created_on,
            "runnerJitConfigUrl": format!("{tenant_url}_apis/runtime/runnerscalesets/{}/generatejitconfig", s.id),
            "statistics": self.statistics(s.id),
        })
    }

    /// `GET RSS?runnerGroupId=G&name=N`.
    pub(crate) fn find_scale_sets(
        &self,
        scope: &Scope,
        group: Option<u64>,
        name: Option<&str>,
    ) -> Vec<&ScaleSet> {
        self.actions
            .scale_sets
            .values()
            .filter(|s| s.scope.key() == scope.key())
            .filter(|s| group.is_none_or(|g| g == s.runner_group_id))
            .filter(|s| name.is_none_or(|n| n.eq_ignore_ascii_case(&s.name)))
            .collect()
    }

    fn check_unique_name(
        &self,
        scope: &Scope,
        name: &str,
        except: Option<u64>,
    ) -> Result<(), ServiceError> {
        if name.trim().is_empty() {
            return Err(ServiceError::bad_request(
                "The runner scale set name is required.",
            ));
        }
        if self
            .find_scale_sets(scope, None, Some(name))
            .iter()
            .any(|s| Some(s.id) != except)
        {
            return Err(ServiceError::new(
                409,
                "RunnerScaleSetExistsException",
                format!("A runner scale set named {name} already exists."),
            ));
        }
        Ok(())
    }

    /// `POST RSS`.
    pub(crate) fn create_scale_set(
        &mut self,
        scope: &Scope,
        raw: &[u8],
    ) -> Result<ScaleSet, ServiceError> {
        let b = object(raw)?;
        let name = str_field(&b, "name")?.unwrap_or("").to_string();
        self.check_unique_name(scope, &name, None)?;
        let group = u64_field(&b, "runnerGroupId")?
            .filter(|g| *g != 0)
            .unwrap_or(1);
        let group_name = self.service_group(&scope.key(), group)?;
        let labels = match b.get("labels") {
            None | Some(Value::Null) => vec![],
            Some(Value::Array(a)) => a
                .iter()
                .map(|l| l.get("name").and_then(Value::as_str).map(str::to_string))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| ServiceError::bad_request("Each label needs a name."))?,
            Some(_) => return Err(ServiceError::bad_request("labels must be an array.")),
        };
        let id = self.actions.next_scale_set_id;
        self.actions.next_scale_set_id += 1;
        let s = ScaleSet {
            id,
            name,
            scope: scope.clone(),
            runner_group_id: group,
            runner_group_name: group_name,
            labels,
            disable_update: disable_update(&b).unwrap_or(false),
            created_on: util::rfc3339(std::time::SystemTime::now()),
        };
        self.actions.scale_sets.insert(id, s.clone());
        Ok(s)
    }

    /// `PATCH RSS/{id}`: name, runner group and settings; labels stay as
    /// they were created (not every service version changes them).
    pub(crate) fn update_scale_set(
        &mut self,
        scope: &Scope,
        id: u64,
        raw: &[u8],
    ) -> Result<ScaleSet, ServiceError> {
        self.scale_set_in(scope, id)?;
        let b = object(raw)?;
        let name = str_field(&b, "name")?
            .filter(|n| !n.is_empty())
            .map(str::to_string);
        if let Some(n) = &name {
            self.check_unique_name(scope, n, Some(id))?;
        }
        let group = match u64_field(&b, "runnerGroupId")?.filter(|g| *g != 0) {
            Some(g) => Some((g, self.service_group(&scope.key(), g)?)),
            None => None,
        };
        let s = self.actions.scale_sets.get_mut(&id).expect("checked");
        if let Some(n) = name {
            s.name = n;
        }
        if let Some((g, gname)) = group {
            s.runner_group_id = g;
            s.runner_group_name = gname;
        }
        if let Some(d) = disable_update(&b) {
            s.disable_update = d;
        }
        Ok(s.clone())
    }

    /// `DELETE RSS/{id}`: its session ends, its idle runners go, its jobs
    /// not started yet are cancelled; running jobs finish on their runners.
    pub(crate) fn delete_scale_set(&mut self, scope: &Scope, id: u64) -> Result<(), ServiceError> {
        self.scale_set_in(scope, id)?;
        self.actions.sessions.remove(&id);
        self.actions.scale_sets.remove(&id);
        let waiting: Vec<u64> = self
            .actions
            .jobs
            .iter()
            .filter(|(_, j)| j.scale_set_id == id && !j.started())
            .map(|(jid, _)| *jid)
            .collect();
        for jid in waiting {
            let _ = self.finish_job(jid, "cancelled");
        }
        let idle: Vec<u64> = self
            .scale_set_runners(id)
            .filter(|r| !r.busy)
            .map(|r| r.id)
            .collect();
        for rid in idle {
            self.remove_runner(rid);
        }
        Ok(())
    }

    /// The runners of a scale set.
    pub(crate) fn scale_set_runners(&self, id: u64) -> impl Iterator<Item = &Runner> {
        let key = self.actions.scale_sets.get(&id).map(|s| s.scope.key());
        key.and_then(|k| self.runner_set(&k))
            .into_iter()
            .flat_map(|set| set.runners.values())
            .filter(move |r| r.scale_set_id == Some(id))
    }

    /// `POST RSS/{id}/generatejitconfig` body `{name, workFolder}`: a JIT
    /// runner of the scope in the scale set's group, with its labels.
    pub(crate) fn scale_set_jit(
        &mut self,
        scope: &Scope,
        id: u64,
        raw: &[u8],
        base: &str,
    ) -> Result<Value, ServiceError> {
        let s = self.scale_set_in(scope, id)?.clone();
        let b = object(raw)?;
        let name = str_field(&b, "name")?.unwrap_or("").to_string();
        let work_folder = str_field(&b, "workFolder")?
            .filter(|w| !w.is_empty())
            .unwrap_or("_work")
            .to_string();
        let labels = if s.labels.is_empty() {
            vec![s.name.clone()]
        } else {
            s.labels.clone()
        };
        let key = scope.key();
        let ctx = Ctx {
            api_base: base,
            web_base: base,
        };
        let (runner, encoded) = self
            .generate_jit(&key, &ctx, &name, s.runner_group_id, &labels, &work_folder)
            .map_err(|e| match e.status {
                409 => ServiceError::new(
                    409,
                    "AgentExistsException",
                    format!("Agent exists with the name {name}."),
                ),
                404 => ServiceError::new(404, "RunnerGroupNotFoundException", e.message),
                _ => ServiceError::bad_request(e.message),
            })?;
        if let Ok(r) = self.runner_mut(&key, runner.id) {
            r.scale_set_id = Some(id);
        }
        let runner = self
            .runner(&key, runner.id)
            .map_err(|_| ServiceError::bad_request("runner vanished"))?;
        Ok(json!({"runner": agent_json(runner), "encodedJITConfig": encoded}))
    }

    /// `GET _apis/distributedtask/pools/0/agents[?agentName=N]`.
    pub(crate) fn agents(&self, scope: &Scope, name: Option<&str>) -> Value {
        let value: Vec<Value> = self
            .runner_set(&scope.key())
            .into_iter()
            .flat_map(|set| set.runners.values())
            .filter(|r| name.is_none_or(|n| n.eq_ignore_ascii_case(&r.name)))
            .map(agent_json)
            .collect();
        json!({"count": value.len(), "value": value})
    }

    fn agent_not_found(id: u64) -> ServiceError {
        ServiceError::new(
            404,
            "AgentNotFoundException",
            format!("No agent found with identifier {id}."),
        )
    }

    pub(crate) fn agent(&self, scope: &Scope, id: u64) -> Result<Value, ServiceError> {
        self.runner(&scope.key(), id)
            .map(agent_json)
            .map_err(|_| Self::agent_not_found(id))
    }

    /// `DELETE …/agents/{id}`: 400 `JobStillRunningException` while busy;
    /// an agent the scope does not have (any more) is removed already: 204.
    /// actions-runner-controller v0.27.6 removes every idle runner it scales
    /// down twice (its EphemeralRunnerSet, then the EphemeralRunner's
    /// finalizer) and takes anything but 204 for a failure, and it scales
    /// down against GitHub: the service does not answer 404 there.
    pub(crate) fn delete_agent(&mut self, scope: &Scope, id: u64) -> Result<(), ServiceError> {
        let Ok(r) = self.runner(&scope.key(), id) else {
            return Ok(());
        };
        if r.busy {
            let mut e = ServiceError::new(
                400,
                "JobStillRunningException",
                format!("Agent {} is still running a job.", r.name),
            );
            e.busy = true;
            return Err(e);
        }
        self.remove_runner(id);
        Ok(())
    }
}
