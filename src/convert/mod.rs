//! `runnerpool-operator convert`: migration from actions-runner-controller
//! (ARC). Reads ARC's manifests and the values files of its
//! `gha-runner-scale-set` chart and prints equivalent RunnerPools, with a
//! `# not converted:` comment for every setting without an equivalent. A
//! pure translation: no cluster and no GitHub are involved.
//!
//! This module reads the inputs, sorts their documents and pairs each
//! autoscaler with its deployment; the parts import from each other, never
//! from here:
//! - `scale_set`: AutoscalingRunnerSet and chart values → scale-set pools;
//! - `deployment`: RunnerDeployment → webhook pools;
//! - `autoscaler`: HorizontalRunnerAutoscaler → the pool's autoscaling;
//! - `template`: ARC's runner pod template → the pool's template and container mode;
//! - `scope`: `githubConfigUrl` → `spec.github`, and the credentials' notes;
//! - `output`: the CRD's limits, and the YAML stream;
//! - `draft`: a converted pool, its notes, and the reader of ARC's settings.

mod autoscaler;
mod deployment;
mod draft;
mod output;
mod scale_set;
mod scope;
mod template;

use std::io::Read;

use serde::Deserialize;
use serde_json::Value;

use draft::{Draft, Fields};
use scale_set::Naming;

/// `runnerpool-operator convert`.
#[derive(clap::Args, Debug, Default)]
pub struct ConvertArgs {
    /// ARC manifests (AutoscalingRunnerSet; RunnerDeployment with its
    /// HorizontalRunnerAutoscaler; several documents a file) or values files
    /// of the gha-runner-scale-set chart. `-` reads standard input.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<String>,

    /// Namespace of every pool printed; by default the ARC object's (none
    /// for values files).
    #[arg(long, short = 'n')]
    pub namespace: Option<String>,

    /// The Helm release of values files, the scale set's name unless
    /// runnerScaleSetName is set; by default the file's name without its
    /// extension.
    #[arg(long)]
    pub release: Option<String>,

    /// Appended to every scale set's name and label, so that the pool can
    /// run next to ARC's scale set while workflows move over (e.g. `-rp`).
    #[arg(long, allow_hyphen_values = true)]
    pub scale_set_suffix: Option<String>,
}

/// Why nothing was printed.
#[derive(Debug, thiserror::Error)]
pub enum ConvertError {
    #[error("cannot read {file}: {source}")]
    Read {
        file: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{file} is not YAML: {message}")]
    Yaml { file: String, message: String },
    #[error("{file}, document {document}: {message}")]
    Invalid {
        file: String,
        document: usize,
        message: String,
    },
    #[error(
        "nothing to convert: no AutoscalingRunnerSet, RunnerDeployment or gha-runner-scale-set values in {files}"
    )]
    Nothing { files: String },
}

/// One input: its name (a path, or `-` for stdin) and text.
pub struct Input {
    pub name: String,
    pub text: String,
}

/// What `convert` prints: the YAML on stdout, the warnings on stderr.
#[derive(Debug)]
pub struct Converted {
    pub yaml: String,
    pub warnings: Vec<String>,
}

/// Reads the files of `args` and converts them.
pub fn run(args: &ConvertArgs) -> Result<Converted, ConvertError> {
    let mut inputs = Vec::new();
    for file in &args.files {
        let mut text = String::new();
        let read = if file == "-" {
            std::io::stdin().read_to_string(&mut text).map(|_| ())
        } else {
            std::fs::read_to_string(file).map(|t| text = t)
        };
        read.map_err(|source| ConvertError::Read {
            file: file.clone(),
            source,
        })?;
        inputs.push(Input {
            name: file.clone(),
            text,
        });
    }
    convert(&inputs, args)
}

/// An ARC document waiting for conversion.
enum Document {
    /// A pool complete in itself (a scale set).
    Pool(Box<Draft>),
    /// A RunnerDeployment's pool, which an autoscaler may size.
    Deployment(Box<Draft>),
    Autoscaler(Autoscaler),
}

/// A HorizontalRunnerAutoscaler waiting for its RunnerDeployment.
struct Autoscaler {
    file: String,
    document: usize,
    source: String,
    namespace: Option<String>,
    target: String,
    spec: Fields,
}

/// Converts `inputs`, in their order.
pub fn convert(inputs: &[Input], args: &ConvertArgs) -> Result<Converted, ConvertError> {
    let mut drafts: Vec<(Draft, bool)> = Vec::new();
    let mut autoscalers = Vec::new();
    let mut skipped = Vec::new();
    for input in inputs {
        for (index, value) in parse(input)?.into_iter().enumerate() {
            let document = index + 1;
            let invalid = |message: String| ConvertError::Invalid {
                file: input.name.clone(),
                document,
                message,
            };
            for value in flatten(value) {
                match classify(input, document, value, args, &mut skipped).map_err(invalid)? {
                    Some(Document::Pool(draft)) => drafts.push((*draft, false)),
                    Some(Document::Deployment(draft)) => drafts.push((*draft, true)),
                    Some(Document::Autoscaler(autoscaler)) => autoscalers.push(autoscaler),
                    None => {}
                }
            }
        }
    }
    for autoscaler in autoscalers {
        let deployment = drafts.iter_mut().find(|(draft, deployment)| {
            *deployment
                && draft.pool.metadata.name.as_deref() == Some(autoscaler.target.as_str())
                && draft.pool.metadata.namespace == autoscaler.namespace
                && draft.pool.spec.autoscaling.is_none()
        });
        let Some((draft, _)) = deployment else {
            skipped.push(format!(
                "skipped {}: its RunnerDeployment {} is not among the inputs (or has another autoscaler)",
                autoscaler.source, autoscaler.target
            ));
            continue;
        };
        autoscaler::apply_autoscaler(draft, &autoscaler.source, autoscaler.spec).map_err(
            |message| ConvertError::Invalid {
                file: autoscaler.file,
                document: autoscaler.document,
                message,
            },
        )?;
    }
    let mut drafts: Vec<Draft> = drafts.into_iter().map(|(draft, _)| draft).collect();
    if drafts.is_empty() {
        let files = inputs
            .iter()
            .map(|i| i.name.as_str())
            .collect::<Vec<_>>()
            .join(", ");
        return Err(ConvertError::Nothing { files });
    }
    drafts.iter_mut().for_each(output::fit_limits);
    let yaml = output::render(&skipped, &drafts).map_err(|message| ConvertError::Invalid {
        file: inputs[0].name.clone(),
        document: 0,
        message,
    })?;
    Ok(Converted {
        yaml,
        warnings: skipped,
    })
}

/// The documents of one input, as JSON values (empty ones left out).
fn parse(input: &Input) -> Result<Vec<Value>, ConvertError> {
    let mut values = Vec::new();
    for document in serde_yaml::Deserializer::from_str(&input.text) {
        let value = Value::deserialize(document).map_err(|e| ConvertError::Yaml {
            file: input.name.clone(),
            message: e.to_string(),
        })?;
        values.push(value);
    }
    Ok(values)
}

/// The items of a `kind: List`, or the document itself.
fn flatten(value: Value) -> Vec<Value> {
    if value.get("kind").and_then(Value::as_str) == Some("List")
        && let Some(Value::Array(items)) = value.get("items")
    {
        return items.clone();
    }
    vec![value]
}

/// What one document is: a pool to print, an autoscaler to pair, or
/// nothing (noted in `skipped`).
fn classify(
    input: &Input,
    document: usize,
    value: Value,
    args: &ConvertArgs,
    skipped: &mut Vec<String>,
) -> Result<Option<Document>, String> {
    let mut object = match value {
        Value::Null => return Ok(None),
        Value::Object(object) => object,
        other => return Err(format!("expected a mapping, found {}", draft::kind(&other))),
    };
    let Some(kind) = object
        .get("kind")
        .and_then(Value::as_str)
        .map(str::to_string)
    else {
        return values_file(input, Value::Object(object), args).map(Some);
    };
    let api = object
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let metadata = object.remove("metadata").unwrap_or(Value::Null);
    let name = metadata
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let namespace = args.namespace.clone().or_else(|| {
        metadata
            .get("namespace")
            .and_then(Value::as_str)
            .map(str::to_string)
    });
    let shown = match &namespace {
        Some(ns) => format!("{kind} {ns}/{name}"),
        None => format!("{kind} {name}"),
    };
    let source = format!("{}: {shown}", input.name);
    let github = api.starts_with("actions.github.com/");
    let summerwind = api.starts_with("actions.summerwind.");
    if (github || summerwind) && name.is_empty() {
        return Err(format!("{kind} has no metadata.name"));
    }
    let spec = Fields::new("spec", object.remove("spec"))?;
    let found = match kind.as_str() {
        "AutoscalingRunnerSet" if github => {
            let naming = Naming {
                name: &name,
                namespace: namespace.as_deref(),
                suffix: args.scale_set_suffix.as_deref().unwrap_or(""),
            };
            Document::Pool(Box::new(scale_set::convert_scale_set(
                source, &naming, spec, false,
            )?))
        }
        "RunnerDeployment" if summerwind => {
            let draft = deployment::convert_deployment(source, &name, namespace.as_deref(), spec)?;
            Document::Deployment(Box::new(draft))
        }
        "HorizontalRunnerAutoscaler" if summerwind => {
            let mut spec = spec;
            let mut target = spec.object("scaleTargetRef")?;
            let target_kind = target
                .string("kind")?
                .unwrap_or_else(|| "RunnerDeployment".into());
            let target_name = target.string("name")?.unwrap_or_default();
            if target_kind != "RunnerDeployment" {
                skipped.push(format!(
                    "skipped {source}: it scales a {target_kind}, which is not converted"
                ));
                return Ok(None);
            }
            Document::Autoscaler(Autoscaler {
                file: input.name.clone(),
                document,
                source,
                namespace,
                target: target_name,
                spec,
            })
        }
        "RunnerSet" | "Runner" | "RunnerReplicaSet" if summerwind => {
            skipped.push(format!(
                "skipped {source}: convert its RunnerDeployment, or write the pool by hand (see the README's mapping)"
            ));
            return Ok(None);
        }
        _ if github => {
            skipped.push(format!(
                "skipped {source}: ARC's controller makes it from an AutoscalingRunnerSet; convert that"
            ));
            return Ok(None);
        }
        _ => {
            skipped.push(format!("skipped {source}: not an ARC runner resource"));
            return Ok(None);
        }
    };
    Ok(Some(found))
}

/// A document without `kind`: the values of a gha-runner-scale-set release.
fn values_file(input: &Input, value: Value, args: &ConvertArgs) -> Result<Document, String> {
    if value.get("githubConfigUrl").is_none() {
        return Err(
            "neither a Kubernetes object (no kind) nor values of gha-runner-scale-set (no githubConfigUrl)"
                .to_string(),
        );
    }
    let release = match &args.release {
        Some(release) => release.clone(),
        None if input.name == "-" => {
            return Err(
                "values from standard input: name the Helm release with --release".to_string(),
            );
        }
        None => std::path::Path::new(&input.name)
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default(),
    };
    let name = value
        .get("runnerScaleSetName")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .unwrap_or_else(|| release.clone());
    let naming = Naming {
        name: &name,
        namespace: args.namespace.as_deref(),
        suffix: args.scale_set_suffix.as_deref().unwrap_or(""),
    };
    let source = format!(
        "{}: values of gha-runner-scale-set release {release}",
        input.name
    );
    let spec = Fields::new("", Some(value))?;
    let draft = scale_set::convert_scale_set(source, &naming, spec, true)?;
    Ok(Document::Pool(Box::new(draft)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::RunnerPool;
    use crate::crd::ContainerMode;

    const FILES: [(&str, &str); 4] = [
        (
            "arc-runner-set.yaml",
            include_str!("../../tests/data/convert/arc-runner-set.yaml"),
        ),
        (
            "autoscaling-runner-set.yaml",
            include_str!("../../tests/data/convert/autoscaling-runner-set.yaml"),
        ),
        (
            "ghes-kubernetes-values.yaml",
            include_str!("../../tests/data/convert/ghes-kubernetes-values.yaml"),
        ),
        (
            "runner-deployments.yaml",
            include_str!("../../tests/data/convert/runner-deployments.yaml"),
        ),
    ];

    fn input(name: &str, text: &str) -> Input {
        Input {
            name: name.to_string(),
            text: text.to_string(),
        }
    }

    fn run_on(inputs: &[Input], args: &ConvertArgs) -> Result<Converted, ConvertError> {
        convert(inputs, args)
    }

    fn pools(yaml: &str) -> Vec<RunnerPool> {
        serde_yaml::Deserializer::from_str(yaml)
            .map(|d| RunnerPool::deserialize(d).expect("a RunnerPool"))
            .collect()
    }

    /// minRunners, maxRunners and idleRunners.
    fn bounds(pool: &RunnerPool) -> (Option<i32>, i32, Option<i32>) {
        let a = pool.spec.autoscaling.as_ref().expect("autoscaling");
        (a.min_runners, a.max_runners, a.idle_runners)
    }

    fn all_files() -> Vec<Input> {
        FILES.iter().map(|(name, text)| input(name, text)).collect()
    }

    fn pool<'a>(pools: &'a [RunnerPool], name: &str) -> &'a RunnerPool {
        pools
            .iter()
            .find(|p| p.metadata.name.as_deref() == Some(name))
            .expect(name)
    }

    #[test]
    fn the_documented_examples_convert_to_pools_within_the_crds_limits() {
        let converted = run_on(&all_files(), &ConvertArgs::default()).unwrap();
        let pools = pools(&converted.yaml);
        assert_eq!(pools.len(), 6);
        for pool in &pools {
            let name = pool.metadata.name.as_deref().unwrap();
            assert!(name.len() <= 63, "{name}");
            assert!(
                name.len() <= 52 || pool.spec.runner_name_prefix.is_some(),
                "{name}"
            );
            assert!((1..=99).contains(&pool.spec.labels.len()), "{name}");
            assert!(
                pool.runner_image().is_some(),
                "{name}: a runner container with an image"
            );
            assert!(
                !(pool.spec.replicas.is_some() && pool.spec.autoscaling.is_some()),
                "{name}"
            );
            if let Some(a) = &pool.spec.autoscaling {
                assert!(a.min_runners.unwrap_or(0) <= a.max_runners, "{name}");
            }
            if pool.spec.container_mode == ContainerMode::Kubernetes {
                assert!(pool.spec.work_volume_claim_template.is_some(), "{name}");
            }
        }
        assert_eq!(
            converted.warnings.len(),
            1,
            "the Secret is skipped: {:?}",
            converted.warnings
        );
        assert!(
            converted
                .yaml
                .starts_with("# skipped autoscaling-runner-set.yaml: Secret ")
        );
    }

    #[test]
    fn output_is_deterministic_and_never_holds_an_inline_secret() {
        let first = run_on(&all_files(), &ConvertArgs::default()).unwrap().yaml;
        let second = run_on(&all_files(), &ConvertArgs::default()).unwrap().yaml;
        assert_eq!(first, second);
        assert!(!first.contains("ghp_not_a_real_token"), "{first}");
        assert!(
            first
                .contains("create secret generic arc-runner-set-github --from-literal=token=TOKEN")
        );
    }

    #[test]
    fn scale_sets_keep_their_name_scope_bounds_and_mode() {
        let args = ConvertArgs {
            namespace: Some("ci".into()),
            scale_set_suffix: Some("-rp".into()),
            ..ConvertArgs::default()
        };
        let pools = pools(&run_on(&all_files(), &args).unwrap().yaml);
        let quick_start = pool(&pools, "arc-runner-set");
        assert_eq!(quick_start.metadata.namespace.as_deref(), Some("ci"));
        assert_eq!(quick_start.scale_set_name(), Some("arc-runner-set-rp"));
        assert_eq!(quick_start.spec.labels, ["arc-runner-set-rp"]);
        assert_eq!(
            quick_start.spec.github.organization.as_deref(),
            Some("octo-org")
        );
        assert_eq!(quick_start.spec.container_mode, ContainerMode::Dind);
        assert_eq!(bounds(quick_start), (Some(1), 5, Some(0)));
        let a = quick_start.spec.autoscaling.as_ref().unwrap();
        assert_eq!(a.scale_down_delay_seconds, Some(0));

        let ghes = pool(&pools, "monorepo-k8s");
        assert_eq!(
            ghes.spec.github.repository.as_deref(),
            Some("platform/monorepo")
        );
        assert_eq!(
            ghes.spec.github.api_url.as_deref(),
            Some("https://ghes.example.internal/api/v3")
        );
        assert_eq!(
            ghes.spec.github.credentials_secret.as_ref().unwrap().name,
            "ghes-app-credentials"
        );
        assert_eq!(ghes.spec.container_mode, ContainerMode::Kubernetes);
        assert_eq!(
            ghes.spec.work_volume_claim_template.as_ref().unwrap().size,
            "4Gi"
        );
        assert_eq!(
            ghes.spec.runner_group, None,
            "repository runners have no groups"
        );

        let rendered = pool(&pools, "linux");
        assert_eq!(
            rendered.spec.github.enterprise.as_deref(),
            Some("octo-enterprise")
        );
        assert_eq!(rendered.spec.container_mode, ContainerMode::Dind);
        let spec = rendered.spec.template.spec.as_ref().unwrap();
        assert_eq!(
            spec.containers.len(),
            1,
            "the chart's dind container is the operator's job"
        );
        assert!(spec.volumes.is_none() && spec.init_containers.is_none());
    }

    #[test]
    fn runner_deployments_take_their_autoscalers() {
        let pools = pools(&run_on(&all_files(), &ConvertArgs::default()).unwrap().yaml);
        let org = pool(&pools, "org-runners");
        assert_eq!(
            org.spec.labels,
            ["self-hosted", "linux", "x64", "large", "gpu"]
        );
        assert_eq!(org.spec.runner_group.as_deref(), Some("linux-large"));
        assert_eq!(org.spec.container_mode, ContainerMode::Dind);
        assert_eq!(org.runner_image(), Some(template::RUNNER_IMAGE));
        assert_eq!(bounds(org), (Some(0), 10, Some(0)));
        let a = org.spec.autoscaling.as_ref().unwrap();
        assert_eq!(a.scale_down_delay_seconds, Some(300));

        let repo = pool(&pools, "repo-runners");
        assert_eq!(repo.spec.container_mode, ContainerMode::None);
        assert_eq!(
            repo.spec.github.credentials_secret.as_ref().unwrap().name,
            "octo-repo-app"
        );
        assert_eq!(bounds(repo), (Some(1), 6, Some(1)));
        let a = repo.spec.autoscaling.as_ref().unwrap();
        assert_eq!(a.schedules.len(), 1);
        assert_eq!(
            (a.schedules[0].start.as_str(), a.schedules[0].end.as_str()),
            ("08:00", "18:00")
        );

        let fixed = pools.iter().find(|p| p.spec.replicas.is_some()).unwrap();
        assert_eq!(fixed.spec.replicas, Some(2));
        assert_eq!(fixed.spec.container_mode, ContainerMode::Kubernetes);
        assert!(fixed.spec.runner_name_prefix.as_ref().unwrap().len() <= 52);
    }

    #[test]
    fn settings_without_an_equivalent_are_named_in_comments() {
        let yaml = run_on(&all_files(), &ConvertArgs::default()).unwrap().yaml;
        for expected in [
            "# not converted: listenerTemplate: ",
            "# not converted: controllerServiceAccount: ",
            "# not converted: githubServerTLS: ",
            "# not converted: spec.metrics: ",
            "# not converted: spec.scheduledOverrides[0]: ",
            "# not converted: spec.template.spec.dockerMTU: ",
            "# not converted: spec.template.spec.ephemeral: ",
            "# not converted: spec.template.spec.image: summerwind/actions-runner-dind ",
        ] {
            assert!(yaml.contains(expected), "{expected} missing in\n{yaml}");
        }
        let unknown = "apiVersion: actions.github.com/v1alpha1\nkind: AutoscalingRunnerSet\n\
            metadata: {name: a}\nspec: {githubConfigUrl: 'https://github.com/o', githubConfigSecret: s, \
            maxRunners: 1, vaultConfig: {type: azure}}\n";
        let yaml = run_on(&[input("a.yaml", unknown)], &ConvertArgs::default())
            .unwrap()
            .yaml;
        assert!(
            yaml.contains("# not converted: spec.vaultConfig: unknown to this converter"),
            "{yaml}"
        );
    }

    #[test]
    fn bad_input_is_an_error_naming_the_file_and_document() {
        let args = ConvertArgs::default();
        let error = |text: &str| {
            run_on(&[input("in.yaml", text)], &args)
                .unwrap_err()
                .to_string()
        };
        assert!(error("a: [").starts_with("in.yaml is not YAML: "));
        assert_eq!(
            error("---\n---\n- 1\n"),
            "in.yaml, document 2: expected a mapping, found a list"
        );
        assert!(error("foo: 1\n").contains("neither a Kubernetes object"));
        assert!(
            error("githubConfigUrl: https://github.com\ngithubConfigSecret: s\n")
                .contains("names no enterprise, organization or repository")
        );
        assert!(
            error("githubConfigUrl: https://github.com/o\n")
                .contains("githubConfigSecret is missing")
        );
        assert!(error("githubConfigUrl: https://github.com/o\ngithubConfigSecret: s\nminRunners: 3\nmaxRunners: 2\n")
            .contains("minRunners (3) exceeds maxRunners (2)"));
        assert!(
            error("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n")
                .starts_with("nothing to convert")
        );
        let stdin = run_on(
            &[input(
                "-",
                "githubConfigUrl: https://github.com/o\ngithubConfigSecret: s\n",
            )],
            &args,
        );
        assert!(stdin.unwrap_err().to_string().contains("--release"));
    }

    #[test]
    fn an_autoscaler_without_its_deployment_is_skipped_with_a_warning() {
        let text = "apiVersion: actions.summerwind.dev/v1alpha1\nkind: HorizontalRunnerAutoscaler\n\
            metadata: {name: h}\nspec: {scaleTargetRef: {name: gone}, maxReplicas: 3}\n---\n\
            apiVersion: actions.summerwind.dev/v1alpha1\nkind: RunnerDeployment\nmetadata: {name: d}\n\
            spec: {template: {spec: {organization: o}}}\n";
        let converted = run_on(&[input("in.yaml", text)], &ConvertArgs::default()).unwrap();
        assert_eq!(converted.warnings.len(), 1);
        assert!(
            converted.warnings[0].contains("its RunnerDeployment gone is not among the inputs")
        );
        assert_eq!(pools(&converted.yaml)[0].spec.replicas, None);
    }

    #[test]
    fn the_readme_lists_every_flag_of_convert() {
        let command = <ConvertArgs as clap::Args>::augment_args(clap::Command::new("convert"));
        let readme = include_str!("../../README.md");
        for long in command.get_arguments().filter_map(|a| a.get_long()) {
            assert!(
                readme.contains(&format!("`--{long}`")),
                "README lacks --{long}"
            );
        }
    }
}
