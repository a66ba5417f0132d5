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
    /// run next to ARC's scale set while workflows move over.
    #[arg(long, default_value = "")]
    pub scale_set_suffix: String,
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
    Pool(Draft),
    /// A HorizontalRunnerAutoscaler: its target and its spec.
    Autoscaler {
        at: (String, usize),
        source: String,
        namespace: Option<String>,
        target: String,
        spec: Fields,
    },
}

/// Converts `inputs`, in their order.
pub fn convert(inputs: &[Input], args: &ConvertArgs) -> Result<Converted, ConvertError> {
    let mut documents = Vec::new();
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
                if let Some(found) = classify(input, document, value, args, &mut skipped).map_err(invalid)? {
                    documents.push(found);
                }
            }
        }
    }
    let mut drafts: Vec<Draft> = Vec::new();
    let mut autoscalers = Vec::new();
    for document in documents {
        match document {
            Document::Pool(draft) => drafts.push(draft),
            autoscaler => autoscalers.push(autoscaler),
        }
    }
    for autoscaler in autoscalers {
        let Document::Autoscaler { at, source, namespace, target, spec } = autoscaler else {
            continue;
        };
        let deployment = drafts.iter_mut().find(|d| {
            d.source.contains(": RunnerDeployment ")
                && d.pool.metadata.name.as_deref() == Some(target.as_str())
                && d.pool.metadata.namespace == namespace
                && d.pool.spec.autoscaling.is_none()
        });
        match deployment {
            Some(draft) => autoscaler::apply_autoscaler(draft, &source, spec).map_err(|message| {
                ConvertError::Invalid {
                    file: at.0.clone(),
                    document: at.1,
                    message,
                }
            })?,
            None => skipped.push(format!(
                "skipped {source}: its RunnerDeployment {target} is not among the inputs (or has another autoscaler)"
            )),
        }
    }
    if drafts.is_empty() {
        let files = inputs.iter().map(|i| i.name.as_str()).collect::<Vec<_>>().join(", ");
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
    let Some(kind) = object.get("kind").and_then(Value::as_str).map(str::to_string) else {
        return values_file(input, Value::Object(object), args).map(Some);
    };
    let api = object.get("apiVersion").and_then(Value::as_str).unwrap_or("").to_string();
    let metadata = object.remove("metadata").unwrap_or(Value::Null);
    let name = metadata.get("name").and_then(Value::as_str).unwrap_or("").to_string();
    let namespace = args
        .namespace
        .clone()
        .or_else(|| metadata.get("namespace").and_then(Value::as_str).map(str::to_string));
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
                suffix: &args.scale_set_suffix,
            };
            Document::Pool(scale_set::convert_scale_set(source, &naming, spec, false)?)
        }
        "RunnerDeployment" if summerwind => Document::Pool(deployment::convert_deployment(
            source,
            &name,
            namespace.as_deref(),
            spec,
        )?),
        "HorizontalRunnerAutoscaler" if summerwind => {
            let mut spec = spec;
            let mut target = spec.object("scaleTargetRef")?;
            let target_kind = target.string("kind")?.unwrap_or_else(|| "RunnerDeployment".into());
            let target_name = target.string("name")?.unwrap_or_default();
            if target_kind != "RunnerDeployment" {
                skipped.push(format!("skipped {source}: it scales a {target_kind}, which is not converted"));
                return Ok(None);
            }
            Document::Autoscaler {
                at: (input.name.clone(), document),
                source: format!("{}: {shown}", input.name),
                namespace,
                target: target_name,
                spec,
            }
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
            return Err("values from standard input: name the Helm release with --release".to_string());
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
        suffix: &args.scale_set_suffix,
    };
    let source = format!("{}: values of gha-runner-scale-set release {release}", input.name);
    let spec = Fields::new("", Some(value))?;
    scale_set::convert_scale_set(source, &naming, spec, true).map(Document::Pool)
}
