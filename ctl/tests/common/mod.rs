//! A real `sprawl` node on free 127.0.0.1 ports, and `sprawlctl` runs
//! against it with a deadline.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Longest a node may take to start, and a sprawlctl run to finish.
const NODE_START_TIMEOUT: Duration = Duration::from_secs(30);
const CTL_RUN_TIMEOUT: Duration = Duration::from_secs(30);

/// The `sprawl` binary of the same target dir and profile as `sprawlctl`:
/// `SPRAWL_BIN` if set, else next to `sprawlctl`, built there first (once
/// per test process) if missing.
pub fn sprawl_binary() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| {
        if let Some(path) = std::env::var_os("SPRAWL_BIN") {
            return PathBuf::from(path);
        }
        let ctl = Path::new(env!("CARGO_BIN_EXE_sprawlctl"));
        let profile_dir = ctl.parent().expect("sprawlctl lives in a directory");
        let sprawl = profile_dir.join(format!("sprawl{}", std::env::consts::EXE_SUFFIX));
        if !sprawl.is_file() {
            build_sprawl(profile_dir);
        }
        assert!(
            sprawl.is_file(),
            "{} is missing after building it; set SPRAWL_BIN to a sprawl binary",
            sprawl.display()
        );
        sprawl
    })
}

/// `cargo build -p sprawl-node --bin sprawl` into `profile_dir`: the same
/// target dir, profile and (when cross-compiling) target triple.
fn build_sprawl(profile_dir: &Path) {
    let parent = profile_dir.parent().expect("a profile dir has a parent");
    // A target dir is marked by CACHEDIR.TAG; with --target, profiles sit
    // one level deeper, under the triple.
    let (target_dir, triple) = match parent.parent() {
        Some(grandparent)
            if !parent.join("CACHEDIR.TAG").exists()
                && grandparent.join("CACHEDIR.TAG").exists() =>
        {
            (grandparent, parent.file_name())
        }
        _ => (parent, None),
    };
    let cargo = std::env::var_os("CARGO")
        .or_else(|| option_env!("CARGO").map(Into::into))
        .unwrap_or_else(|| "cargo".into());
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("ctl/ is inside the workspace");
    let mut command = Command::new(&cargo);
    command
        .current_dir(workspace)
        .args([
            "build",
            "-p",
            "sprawl-node",
            "--bin",
            "sprawl",
            "--target-dir",
        ])
        .arg(target_dir);
    match profile_dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") => {}
        Some("release") => {
            command.arg("--release");
        }
        Some(profile) => {
            command.args(["--profile", profile]);
        }
        None => panic!("unexpected binary dir {}", profile_dir.display()),
    }
    if let Some(triple) = triple {
        command.arg("--target").arg(triple);
    }
    eprintln!("building the node for the tests: {command:?}");
    let status = command
        .status()
        .unwrap_or_else(|e| panic!("running {cargo:?}: {e}"));
    assert!(status.success(), "{command:?} failed: {status}");
}

pub struct Node {
    child: Child,
    pub quic: SocketAddr,
    pub admin: SocketAddr,
    /// The directory the node's data dir (`data/`) is in: running
    /// sprawlctl here finds the node's certificate by default.
    pub home: PathBuf,
}

impl Node {
    /// A node with 2 shards over `<home>/data`.
    pub fn start(home: &Path) -> Node {
        let quic_port = std::net::UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let admin_port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let quic: SocketAddr = ([127, 0, 0, 1], quic_port).into();
        let admin: SocketAddr = ([127, 0, 0, 1], admin_port).into();
        let mut child = Command::new(sprawl_binary())
            .arg("--data-dir")
            .arg(home.join("data"))
            .args(["--listen", &quic.to_string(), "--admin", &admin.to_string()])
            .args(["--shards", "2", "--no-pin", "--log", "warn"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("starting sprawl");
        let stdout = child.stdout.take().expect("piped");
        let (tx, rx) = std::sync::mpsc::channel();
        // Keeps draining the node's stdout after it is ready.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let mut node = Node {
            child,
            quic,
            admin,
            home: home.to_owned(),
        };
        let deadline = Instant::now() + NODE_START_TIMEOUT;
        loop {
            match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(line) if line.contains(" ready in ") => return node,
                Ok(_) => {}
                Err(e) => {
                    let status = node.child.try_wait();
                    panic!("sprawl did not become ready: {e} (process: {status:?})");
                }
            }
        }
    }

    /// The certificate the node generated.
    pub fn ca(&self) -> PathBuf {
        self.home.join("data").join("tls").join("cert.pem")
    }

    /// sprawlctl against this node: `--node` and `--ca` given, run from
    /// `home`.
    pub fn ctl(&self, args: &[&str]) -> Run {
        self.ctl_with_input(args, None)
    }

    pub fn ctl_with_input(&self, args: &[&str], stdin: Option<&[u8]>) -> Run {
        let mut all = vec![
            "--node".to_owned(),
            self.quic.to_string(),
            "--ca".to_owned(),
            self.ca().display().to_string(),
        ];
        all.extend(args.iter().map(|a| a.to_string()));
        let all: Vec<&str> = all.iter().map(String::as_str).collect();
        ctl_in(&self.home, &all, stdin)
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What a sprawlctl run did.
#[derive(Debug)]
pub struct Run {
    pub code: Option<i32>,
    pub stdout: Vec<u8>,
    pub stderr: String,
}

impl Run {
    pub fn stdout_text(&self) -> String {
        String::from_utf8(self.stdout.clone()).expect("UTF-8 output")
    }

    /// Asserts exit status 0 and returns stdout as text.
    pub fn ok(&self) -> String {
        assert_eq!(self.code, Some(0), "sprawlctl failed: {self:?}");
        self.stdout_text()
    }

    /// Asserts this exit status and the one-line error; returns the line.
    pub fn failed(&self, code: i32) -> &str {
        assert_eq!(self.code, Some(code), "{self:?}");
        assert!(!self.stderr.contains("panicked"), "{}", self.stderr);
        let lines: Vec<&str> = self.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "one line on stderr: {:?}", self.stderr);
        assert!(lines[0].starts_with("sprawlctl: "), "{:?}", lines[0]);
        lines[0]
    }
}

/// Runs sprawlctl in `dir` without any SPRAWLCTL_* variables of the
/// environment, killing it after [`CTL_RUN_TIMEOUT`].
pub fn ctl_in(dir: &Path, args: &[&str], stdin: Option<&[u8]>) -> Run {
    let mut command = Command::new(env!("CARGO_BIN_EXE_sprawlctl"));
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("SPRAWLCTL_") {
            command.env_remove(name);
        }
    }
    let mut child = command
        .current_dir(dir)
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting sprawlctl");
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().expect("piped");
        let input = input.to_vec();
        std::thread::spawn(move || {
            let _ = pipe.write_all(&input);
        });
    }
    let drain = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = pipe.read_to_end(&mut bytes);
            bytes
        })
    };
    let stdout = drain(Box::new(child.stdout.take().expect("piped")));
    let stderr = drain(Box::new(child.stderr.take().expect("piped")));
    let deadline = Instant::now() + CTL_RUN_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("waiting for sprawlctl") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("sprawlctl {args:?} did not finish within {CTL_RUN_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    Run {
        code: status.code(),
        stdout: stdout.join().expect("stdout reader"),
        stderr: String::from_utf8_lossy(&stderr.join().expect("stderr reader")).into_owned(),
    }
}
