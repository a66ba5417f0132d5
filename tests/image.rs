//! The operator's image as `make image` (scripts/image.sh) builds it without a
//! container daemon: an OCI archive whose blobs match their digests, whose
//! config carries the Dockerfile's entrypoint, command, user and labels, and
//! whose one layer holds exactly the files the Dockerfile copies: a static
//! binary that prints the right version and, alone in that filesystem, runs
//! the operator against the local control plane.

mod support;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::Value;
use sha2::{Digest, Sha256};
use support::cluster::{self, repo_path, target_dir};
use support::operator::install_crd;

const BINARY: &str = "usr/local/bin/runnerpool-operator";

/// The archive, built once per test process (a no-op build when current).
fn archive() -> &'static PathBuf {
    static ARCHIVE: OnceLock<PathBuf> = OnceLock::new();
    ARCHIVE.get_or_init(build_archive)
}

fn build_archive() -> PathBuf {
    // stderr passes through: it names the image and prints the archive's size.
    let out = Command::new("bash")
        .arg(repo_path("scripts/image.sh"))
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .expect("running scripts/image.sh");
    assert!(
        out.status.success(),
        "scripts/image.sh failed ({})",
        out.status
    );
    PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
}

/// A fresh directory under target/ for one test.
fn scratch(name: &str) -> PathBuf {
    let dir = target_dir().join(format!("image-test/{name}-{:08x}", rand::random::<u32>()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn run(what: &str, cmd: &mut Command) -> String {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The OCI layout unpacked, every blob checked against its descriptor.
struct Layout {
    dir: PathBuf,
}

impl Layout {
    fn unpack(archive: &Path) -> Layout {
        let dir = scratch("layout");
        run(
            "tar -xf",
            Command::new("tar")
                .arg("-xf")
                .arg(archive)
                .arg("-C")
                .arg(&dir),
        );
        Layout { dir }
    }

    fn json(&self, rel: &str) -> Value {
        serde_json::from_slice(&std::fs::read(self.dir.join(rel)).unwrap()).unwrap()
    }

    /// The blob a descriptor names; panics unless its digest and size match.
    fn blob(&self, descriptor: &Value) -> Vec<u8> {
        let digest = descriptor["digest"].as_str().unwrap();
        let hex = digest.strip_prefix("sha256:").expect("a sha256 digest");
        let bytes = std::fs::read(self.dir.join("blobs/sha256").join(hex)).unwrap();
        assert_eq!(
            sha256_hex(&bytes),
            hex,
            "blob {digest} does not match its digest"
        );
        assert_eq!(
            descriptor["size"].as_u64(),
            Some(bytes.len() as u64),
            "size of {digest}"
        );
        bytes
    }
}

/// The Dockerfile's final stage: instruction → arguments, in order.
fn dockerfile_final_stage() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(repo_path("Dockerfile")).unwrap();
    let joined = text.replace("\\\n", " ");
    let lines: Vec<&str> = joined.lines().collect();
    let last_from = lines.iter().rposition(|l| l.starts_with("FROM ")).unwrap();
    assert_eq!(
        lines[last_from].trim(),
        "FROM scratch",
        "a base with nothing in it"
    );
    lines[last_from + 1..]
        .iter()
        .filter(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        .map(|l| {
            let (instruction, args) = l.split_once(' ').unwrap();
            (instruction.to_string(), args.trim().to_string())
        })
        .collect()
}

fn dockerfile(instruction: &str) -> Vec<String> {
    dockerfile_final_stage()
        .into_iter()
        .filter(|(i, _)| i == instruction)
        .map(|(_, a)| a)
        .collect()
}

/// The chart's pod security context: the image's user must be the same.
fn chart_user() -> String {
    let template = std::fs::read_to_string(repo_path(
        "charts/runnerpool-operator/templates/deployment.yaml",
    ))
    .unwrap();
    let id = |key: &str| {
        template
            .lines()
            .find_map(|l| l.trim().strip_prefix(key))
            .unwrap_or_else(|| panic!("no {key} in the chart's Deployment"))
            .trim()
            .to_string()
    };
    format!("{}:{}", id("runAsUser:"), id("runAsGroup:"))
}

/// Program headers of a 64-bit little-endian ELF file: true when one is
/// PT_INTERP (the binary needs a dynamic loader from the image).
fn elf_has_interpreter(elf: &[u8]) -> bool {
    assert_eq!(&elf[..4], b"\x7fELF", "not an ELF file");
    assert_eq!(
        (elf[4], elf[5]),
        (2, 1),
        "not a 64-bit little-endian ELF file"
    );
    let u16_at = |o: usize| u16::from_le_bytes(elf[o..o + 2].try_into().unwrap()) as usize;
    let phoff = u64::from_le_bytes(elf[0x20..0x28].try_into().unwrap()) as usize;
    let (phentsize, phnum) = (u16_at(0x36), u16_at(0x38));
    (0..phnum).any(|i| {
        let at = phoff + i * phentsize;
        u32::from_le_bytes(elf[at..at + 4].try_into().unwrap()) == 3
    })
}

fn host_architecture() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => panic!("no image for {other}"),
    }
}

/// Unpacks the image's only layer into `dir`; returns its entries as `tar -tv` shows them.
fn unpack_layer(layout: &Layout, dir: &Path) -> Vec<String> {
    let manifest: Value = {
        let index = layout.json("index.json");
        serde_json::from_slice(&layout.blob(&index["manifests"][0])).unwrap()
    };
    let layer = layout.dir.join("layer.tar.gz");
    std::fs::write(&layer, layout.blob(&manifest["layers"][0])).unwrap();
    run(
        "tar -xzf layer",
        Command::new("tar")
            .arg("-xzf")
            .arg(&layer)
            .arg("-C")
            .arg(dir),
    );
    run(
        "tar -tvzf layer",
        Command::new("tar")
            .args(["--numeric-owner", "-tvzf"])
            .arg(&layer),
    )
    .lines()
    .map(str::to_string)
    .collect()
}

#[test]
fn the_archive_is_the_dockerfiles_image_with_a_static_binary() {
    let archive = archive();
    let size = std::fs::metadata(archive).unwrap().len();
    println!(
        "image archive: {} ({:.1} MiB)",
        archive.display(),
        size as f64 / 1048576.0
    );
    let layout = Layout::unpack(archive);
    assert_eq!(
        layout.json("oci-layout")["imageLayoutVersion"],
        "1.0.0",
        "an OCI image layout"
    );
    let index = layout.json("index.json");
    let manifests = index["manifests"].as_array().unwrap();
    assert_eq!(manifests.len(), 1);
    let version = env!("CARGO_PKG_VERSION");
    let repository = "ghcr.io/runnerpool/runnerpool-operator";
    assert_eq!(
        manifests[0]["annotations"]["io.containerd.image.name"],
        format!("{repository}:{version}").as_str(),
        "docker load names it as the chart's default image"
    );
    assert_eq!(
        manifests[0]["annotations"]["org.opencontainers.image.ref.name"],
        version
    );
    assert_eq!(
        manifests[0]["platform"]["architecture"],
        host_architecture()
    );

    let manifest: Value = serde_json::from_slice(&layout.blob(&manifests[0])).unwrap();
    assert_eq!(
        manifest["mediaType"],
        "application/vnd.oci.image.manifest.v1+json"
    );
    let config: Value = serde_json::from_slice(&layout.blob(&manifest["config"])).unwrap();
    assert_eq!(config["architecture"], host_architecture());
    assert_eq!(config["os"], "linux");

    // Entrypoint, command, user and labels are the Dockerfile's.
    let image = &config["config"];
    let json_array = |s: &str| serde_json::from_str::<Value>(s).unwrap();
    assert_eq!(
        image["Entrypoint"],
        json_array(&dockerfile("ENTRYPOINT")[0])
    );
    assert_eq!(
        image["Entrypoint"],
        serde_json::json!([format!("/{BINARY}")])
    );
    assert_eq!(image["Cmd"], json_array(&dockerfile("CMD")[0]));
    assert_eq!(image["User"], dockerfile("USER")[0].as_str());
    assert_eq!(
        image["User"],
        chart_user().as_str(),
        "the chart's runAsUser:runAsGroup"
    );
    assert_eq!(image["User"], "65532:65532");
    let labels = &image["Labels"];
    assert_eq!(labels["org.opencontainers.image.version"], version);
    assert_eq!(
        labels["org.opencontainers.image.licenses"],
        env!("CARGO_PKG_LICENSE")
    );
    assert_eq!(
        labels["org.opencontainers.image.source"],
        "https://github.com/runnerpool/runnerpool-operator"
    );
    assert_eq!(
        labels.as_object().unwrap().len(),
        dockerfile("LABEL").len(),
        "every LABEL of the Dockerfile: {labels}"
    );

    // One layer, whose uncompressed digest is the config's diff_id.
    let layers = manifest["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 1);
    let compressed = layout.blob(&layers[0]);
    let mut gunzip = Command::new("gzip")
        .arg("-dc")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = gunzip.stdin.take().unwrap();
    let writer = std::thread::spawn(move || std::io::Write::write_all(&mut stdin, &compressed));
    let tar = gunzip.wait_with_output().unwrap().stdout;
    writer.join().unwrap().unwrap();
    assert_eq!(
        config["rootfs"]["diff_ids"],
        serde_json::json!([format!("sha256:{}", sha256_hex(&tar))])
    );

    // Exactly the files the Dockerfile copies, owned by root, and no shell.
    let rootfs = scratch("rootfs");
    let entries = unpack_layer(&layout, &rootfs);
    let files: BTreeSet<String> = entries
        .iter()
        .filter(|e| e.starts_with('-'))
        .map(|e| e.rsplit(' ').next().unwrap().to_string())
        .collect();
    let copied: BTreeSet<String> = dockerfile("COPY")
        .iter()
        .map(|args| {
            args.rsplit(' ')
                .next()
                .unwrap()
                .trim_start_matches('/')
                .to_string()
        })
        .collect();
    assert_eq!(
        files, copied,
        "the layer's files are the Dockerfile's COPYs"
    );
    assert!(
        entries.iter().all(|e| e.contains(" 0/0 ")),
        "everything owned by root: {entries:#?}"
    );
    assert!(!rootfs.join("bin/sh").exists());

    // The binary is static and prints the crate's version.
    let binary = rootfs.join(BINARY);
    assert!(
        !elf_has_interpreter(&std::fs::read(&binary).unwrap()),
        "the binary needs a dynamic loader"
    );
    let printed = run(
        "runnerpool-operator --version",
        Command::new(&binary).arg("--version"),
    );
    assert_eq!(printed.trim(), format!("runnerpool-operator {version}"));

    // The same inputs give the same bytes.
    let again = build_archive();
    assert_eq!(
        sha256_hex(&std::fs::read(&again).unwrap()),
        sha256_hex(&std::fs::read(archive).unwrap()),
        "a second build of the archive differs"
    );
    std::fs::remove_dir_all(&layout.dir).ok();
    std::fs::remove_dir_all(&rootfs).ok();
}

/// The image's filesystem alone (as a container runtime gives it: its layer
/// plus /dev), run as the image's user: the operator starts, trusts the API
/// server and syncs its watches. Needs root (chroot, mknod), as CI has.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_runs_from_the_image_filesystem_alone() {
    if run("id -u", Command::new("id").arg("-u")).trim() != "0" {
        eprintln!("skipped: chroot needs root");
        return;
    }
    install_crd();
    let client = cluster::client().await;
    let ns = cluster::fresh_namespace(&client, "image").await;
    let layout = Layout::unpack(archive());
    let rootfs = scratch("chroot");
    unpack_layer(&layout, &rootfs);
    std::fs::create_dir_all(rootfs.join("dev")).unwrap();
    for (name, minor) in [("null", "3"), ("random", "8"), ("urandom", "9")] {
        run(
            "mknod",
            Command::new("mknod")
                .args(["-m", "666"])
                .arg(rootfs.join("dev").join(name))
                .args(["c", "1", minor]),
        );
    }
    std::fs::copy(
        &cluster::test_cluster().kubeconfig,
        rootfs.join("kubeconfig"),
    )
    .unwrap();
    run(
        "chmod",
        Command::new("chmod")
            .arg("644")
            .arg(rootfs.join("kubeconfig")),
    );

    let mut operator = Command::new("chroot")
        .arg("--userspec=65532:65532")
        .arg(&rootfs)
        .arg(format!("/{BINARY}"))
        .args(["run", "--kubeconfig", "/kubeconfig", "--log-format", "json"])
        .args(["--admin-listen", "127.0.0.1:0", "--watch-namespace", &ns])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("chroot");
    let (lines_tx, lines_rx) = std::sync::mpsc::channel();
    let stdout: Box<dyn std::io::Read + Send> = Box::new(operator.stdout.take().unwrap());
    let stderr: Box<dyn std::io::Read + Send> = Box::new(operator.stderr.take().unwrap());
    for stream in [stdout, stderr] {
        let lines_tx = lines_tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                if lines_tx.send(line).is_err() {
                    break;
                }
            }
        });
    }
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut log = vec![];
    let synced = loop {
        match lines_rx.recv_timeout(Duration::from_millis(500)) {
            Ok(line) => {
                let synced = line.contains("watch caches synced");
                log.push(line);
                if synced {
                    break true;
                }
            }
            Err(_) if Instant::now() >= deadline => break false,
            Err(_) => {
                if operator.try_wait().unwrap().is_some() {
                    break false;
                }
            }
        }
    };
    let _ = operator.kill();
    let status = operator.wait().unwrap();
    log.extend(lines_rx.try_iter());
    assert!(
        synced,
        "the operator did not sync its watches from the image's filesystem ({status}):\n{}",
        log.join("\n")
    );
    std::fs::remove_dir_all(&layout.dir).ok();
    std::fs::remove_dir_all(&rootfs).ok();
}
