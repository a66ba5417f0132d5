//! ARC's scale sets as scale-set pools: an `AutoscalingRunnerSet` (its spec)
//! or the values of a `gha-runner-scale-set` Helm release, which hold the
//! same settings plus the chart's own (inline credentials, `containerMode`).
//! Both are the same model as `spec.scaleSet`: GitHub holds the queue, the
//! pool keeps a runner per assigned job within minRunners and maxRunners.

use k8s_openapi::api::core::v1::EnvVar;
use serde_json::Value;

use crate::crd::{AutoscalingSpec, ContainerMode, ScaleSetSpec, VolumeClaimSpec};
use crate::runner::RUNNER_CONTAINER;

use super::draft::{Draft, Fields, Notes, new_pool};
use super::scope::{existing_secret_notes, github_from_config_url, new_secret_notes};
use super::template::convert_template;

/// ARC's scale sets have no upper bound unless maxRunners is set; a pool
/// must have one, and this is the largest the CRD accepts.
const UNBOUNDED: i32 = 10000;

/// What the scale set is called and where the pool goes.
pub struct Naming<'a> {
    /// The object's or the Helm release's name: the scale set's name unless
    /// `runnerScaleSetName` says otherwise.
    pub name: &'a str,
    pub namespace: Option<&'a str>,
    /// Appended to the scale set's name (`--scale-set-suffix`).
    pub suffix: &'a str,
}

/// A scale-set pool from `spec`, the settings of an AutoscalingRunnerSet or
/// of a values file (`values` allows the chart's own settings).
pub fn convert_scale_set(
    source: String,
    naming: &Naming,
    mut spec: Fields,
    values: bool,
) -> Result<Draft, String> {
    let mut notes = Notes::default();
    let url = spec
        .string("githubConfigUrl")?
        .ok_or_else(|| format!("{} is missing", spec.path("githubConfigUrl")))?;
    let set_name = spec
        .string("runnerScaleSetName")?
        .unwrap_or_else(|| naming.name.to_string());
    let set_name = format!("{set_name}{}", naming.suffix);
    let secret = credentials(&mut spec, naming, values, &mut notes)?;
    let github = github_from_config_url(&url, &secret, &mut notes)?;
    server_tls(&mut spec, &mut notes)?;
    let template_path = spec.path("template");
    let mut converted = convert_template(&template_path, spec.take("template"), &mut notes)?;
    if values {
        chart_container_mode(
            &mut spec,
            &mut converted.mode,
            &mut converted.work_claim,
            &mut notes,
        )?;
    }
    proxy(&mut spec, &mut converted.template, &mut notes)?;
    let labels = vec![set_name.clone()];
    notes.note(format!(
        "labels: ARC's scale set carries its name as its only label; workflows keep `runs-on: {set_name}`"
    ));
    let mut pool = new_pool(
        naming.name,
        naming.namespace,
        github,
        labels,
        converted.template,
    )?;
    pool.spec.scale_set = Some(ScaleSetSpec {
        name: Some(set_name),
    });
    pool.spec.container_mode = converted.mode;
    pool.spec.work_volume_claim_template = converted.work_claim;
    if let Some(group) = spec.string("runnerGroup")? {
        // The chart's default, "default", is GitHub's default group.
        if !group.eq_ignore_ascii_case("default") {
            pool.spec.runner_group = Some(group);
        }
    }
    pool.spec.autoscaling = Some(bounds(&mut spec, &mut notes)?);
    for key in ["listenerTemplate", "listenerMetrics"] {
        let why = "there is no listener pod: the operator's leader holds every pool's session";
        spec.not_converted(key, why, &mut notes);
    }
    spec.not_converted(
        "controllerServiceAccount",
        "the operator's own account (its chart's RBAC) manages every pool",
        &mut notes,
    );
    spec.finish(&mut notes);
    Ok(Draft {
        source,
        pool,
        notes,
    })
}

/// The Secret the pool names; inline credentials of a values file are never
/// copied, only named in a note.
fn credentials(
    spec: &mut Fields,
    naming: &Naming,
    values: bool,
    notes: &mut Notes,
) -> Result<String, String> {
    let path = spec.path("githubConfigSecret");
    match spec.take("githubConfigSecret") {
        Some(Value::String(name)) if !name.is_empty() => {
            existing_secret_notes(&name, naming.namespace, notes);
            Ok(name)
        }
        Some(Value::Object(inline)) if values => {
            let app = inline.keys().any(|k| k.starts_with("github_app_"));
            let name = format!("{}-github", naming.name);
            notes.not_converted(
                &path,
                "inline credentials are never copied into the output; create the Secret below",
            );
            new_secret_notes(&name, naming.namespace, app, notes);
            Ok(name)
        }
        None => Err(format!("{path} is missing")),
        Some(other) => Err(format!(
            "{path} must be the name of a Secret{}, not {}",
            if values {
                " or the chart's inline credentials"
            } else {
                ""
            },
            super::draft::kind(&other)
        )),
    }
}

/// `githubServerTLS`: ARC reads the CA from a ConfigMap, a pool holds it inline.
fn server_tls(spec: &mut Fields, notes: &mut Notes) -> Result<(), String> {
    let mut tls = spec.object("githubServerTLS")?;
    if tls.is_empty() {
        return Ok(());
    }
    let reference = tls
        .take("certificateFrom")
        .and_then(|from| from.get("configMapKeyRef").cloned())
        .map(|r| {
            format!(
                "{}/{}",
                r["name"].as_str().unwrap_or("?"),
                r["key"].as_str().unwrap_or("?")
            )
        });
    notes.not_converted(
        &spec.path("githubServerTLS"),
        &format!(
            "put the PEM of ConfigMap key {} into spec.github.caBundle (the operator trusts it; \
             the runner image needs it too, e.g. NODE_EXTRA_CA_CERTS)",
            reference.unwrap_or_else(|| "?".to_string())
        ),
    );
    tls.take("runnerMountPath");
    tls.finish(notes);
    Ok(())
}

/// The chart's `containerMode`, which wins over what the template shows.
fn chart_container_mode(
    spec: &mut Fields,
    mode: &mut ContainerMode,
    work_claim: &mut Option<VolumeClaimSpec>,
    notes: &mut Notes,
) -> Result<(), String> {
    let mut chart = spec.object("containerMode")?;
    match chart.string("type")?.as_deref() {
        None => {}
        Some("dind") => *mode = ContainerMode::Dind,
        Some("kubernetes") => {
            *mode = ContainerMode::Kubernetes;
            let mut claim = chart.object("kubernetesModeWorkVolumeClaim")?;
            let size = claim
                .take("resources")
                .and_then(|r| r.pointer("/requests/storage").cloned())
                .and_then(|s| s.as_str().map(str::to_string));
            let size = size.unwrap_or_else(|| {
                notes
                    .note("containerMode: the work volume claim requests no storage: 10Gi was set");
                "10Gi".to_string()
            });
            *work_claim = Some(VolumeClaimSpec {
                storage_class_name: claim.string("storageClassName")?,
                size,
                access_modes: claim.typed("accessModes")?,
            });
            claim.finish(notes);
        }
        Some(other) => {
            return Err(format!(
                "{} must be dind or kubernetes, not {other:?}",
                chart.path("type")
            ));
        }
    }
    chart.not_converted(
        "kubernetesModeServiceAccount",
        "the operator makes the hooks' account (<pool>-container-hooks) itself",
        notes,
    );
    chart.finish(notes);
    Ok(())
}

/// `minRunners`/`maxRunners`; ARC keeps no idle runner beyond minRunners
/// and removes finished ones at once.
fn bounds(spec: &mut Fields, notes: &mut Notes) -> Result<AutoscalingSpec, String> {
    let min = spec.int("minRunners")?.unwrap_or(0);
    let max = match spec.int("maxRunners")? {
        Some(max) => max,
        None => {
            notes.note(format!(
                "maxRunners: ARC's scale set had no upper bound; {UNBOUNDED} (the largest allowed) was set: pick a real one"
            ));
            i64::from(UNBOUNDED)
        }
    };
    let clamp = |n: i64| n.clamp(0, i64::from(UNBOUNDED)) as i32;
    if min > max {
        return Err(format!("minRunners ({min}) exceeds maxRunners ({max})"));
    }
    Ok(AutoscalingSpec {
        min_runners: Some(clamp(min)),
        max_runners: clamp(max),
        idle_runners: Some(0),
        scale_down_delay_seconds: Some(0),
        ..AutoscalingSpec::default()
    })
}

/// `proxy`: URLs without credentials become the runner's proxy variables.
fn proxy(
    spec: &mut Fields,
    template: &mut k8s_openapi::api::core::v1::PodTemplateSpec,
    notes: &mut Notes,
) -> Result<(), String> {
    let mut proxy = spec.object("proxy")?;
    if proxy.is_empty() {
        return Ok(());
    }
    let mut env = Vec::new();
    for (key, variable) in [("http", "HTTP_PROXY"), ("https", "HTTPS_PROXY")] {
        let mut server = proxy.object(key)?;
        if let Some(url) = server.string("url")? {
            env.push(EnvVar {
                name: variable.to_string(),
                value: Some(url),
                ..EnvVar::default()
            });
        }
        if server.string("credentialSecretRef")?.is_some() {
            notes.not_converted(
                &server.path("credentialSecretRef"),
                "put the proxy's credentials into the runner's proxy variables yourself (from that Secret)",
            );
        }
        server.finish(notes);
    }
    if let Some(hosts) = proxy.typed::<Vec<String>>("noProxy")? {
        env.push(EnvVar {
            name: "NO_PROXY".to_string(),
            value: Some(hosts.join(",")),
            ..EnvVar::default()
        });
    }
    proxy.finish(notes);
    notes.note(
        "proxy: set on the runner container as HTTP_PROXY/HTTPS_PROXY/NO_PROXY; the operator \
         itself reaches GitHub through its own proxy variables (the chart's proxy values)",
    );
    let runner = template
        .spec
        .iter_mut()
        .flat_map(|s| s.containers.iter_mut())
        .find(|c| c.name == RUNNER_CONTAINER);
    if let Some(runner) = runner {
        let existing = runner.env.get_or_insert_with(Vec::new);
        for variable in env {
            if !existing.iter().any(|e| e.name == variable.name) {
                existing.push(variable);
            }
        }
    }
    Ok(())
}
