//! A real `sprawl` process on free 127.0.0.1 ports, for integration tests.
#![allow(dead_code)]

pub mod cluster;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct NodeProcess {
    pub child: Option<Child>,
    pub quic: SocketAddr,
    pub admin: SocketAddr,
    pub data_dir: PathBuf,
    pub stdout_lines: std::sync::mpsc::Receiver<String>,
}

/// A UDP and a TCP port free right now on 127.0.0.1.
pub fn free_ports() -> (u16, u16) {
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    (
        udp.local_addr().unwrap().port(),
        tcp.local_addr().unwrap().port(),
    )
}

impl NodeProcess {
    /// Starts a node with `shards` shards over `data_dir` and waits until it serves.
    pub fn start(data_dir: &Path, shards: usize) -> Self {
        Self::start_with(data_dir, shards, &[])
    }

    pub fn start_with(data_dir: &Path, shards: usize, extra: &[&str]) -> Self {
        let (quic_port, admin_port) = free_ports();
        Self::start_on(data_dir, shards, quic_port, admin_port, extra)
    }

    pub fn start_on(
        data_dir: &Path,
        shards: usize,
        quic_port: u16,
        admin_port: u16,
        extra: &[&str],
    ) -> Self {
        Self::start_env(data_dir, shards, quic_port, admin_port, extra, &[])
    }

    /// [`Self::start_on`] with extra environment variables.
    pub fn start_env(
        data_dir: &Path,
        shards: usize,
        quic_port: u16,
        admin_port: u16,
        extra: &[&str],
        envs: &[(&str, &str)],
    ) -> Self {
        let quic: SocketAddr = format!("127.0.0.1:{quic_port}").parse().unwrap();
        let admin: SocketAddr = format!("127.0.0.1:{admin_port}").parse().unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_sprawl"))
            .arg("--data-dir")
            .arg(data_dir)
            .args(["--listen", &quic.to_string(), "--admin", &admin.to_string()])
            .args(["--shards", &shards.to_string(), "--no-pin", "--log", "warn"])
            .args(extra)
            .envs(envs.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start sprawl");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) if line.contains(" ready in ") => break,
                Ok(_) => {}
                Err(e) => panic!("sprawl did not become ready: {e}"),
            }
        }
        Self {
            child: Some(child),
            quic,
            admin,
            data_dir: data_dir.to_path_buf(),
            stdout_lines: rx,
        }
    }

    /// The self-signed certificate the node generated, for clients' `--ca`.
    pub fn ca(&self) -> PathBuf {
        self.data_dir.join("tls").join("cert.pem")
    }

    /// SIGSTOP (`true`) or SIGCONT (`false`): the process freezes as if cut
    /// off from the network (no packet in or out), then resumes where it was.
    pub fn pause(&self, stop: bool) {
        let c = self.child.as_ref().expect("running");
        let signal = if stop {
            rustix::process::Signal::STOP
        } else {
            rustix::process::Signal::CONT
        };
        rustix::process::kill_process(rustix::process::Pid::from_child(c), signal).unwrap();
    }

    /// SIGKILL, no chance to flush.
    pub fn kill_9(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }

    /// SIGTERM and wait; returns the exit status code.
    pub fn terminate(&mut self) -> Option<i32> {
        let mut c = self.child.take()?;
        rustix::process::kill_process(
            rustix::process::Pid::from_child(&c),
            rustix::process::Signal::TERM,
        )
        .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = c.try_wait().unwrap() {
                return status.code();
            }
            assert!(
                Instant::now() < deadline,
                "sprawl did not stop after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `GET path` on the admin endpoint: (status line, body).
    pub fn admin_get(&self, path: &str) -> (String, String) {
        admin_request(self.admin, "GET", path).unwrap()
    }

    /// `POST path` (no body) on the admin endpoint: (status line, body).
    pub fn admin_post(&self, path: &str) -> (String, String) {
        admin_request(self.admin, "POST", path).unwrap()
    }
}

/// One admin HTTP request to `admin`: (status line, body), or why it could
/// not be made (e.g. the node is gone). Usable from any thread.
pub fn admin_request(
    admin: SocketAddr,
    method: &str,
    path: &str,
) -> std::io::Result<(String, String)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(admin)?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )?;
    let mut text = String::new();
    s.read_to_string(&mut text)?;
    let (head, body) = text.split_once("\r\n\r\n").ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            format!("{method} {path}: incomplete answer {text:?}"),
        )
    })?;
    let status = head.lines().next().unwrap_or_default().to_string();
    Ok((status, body.to_string()))
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        self.kill_9();
    }
}
