//! What machine a benchmark ran on: CPU model, cores, memory, kernel, the
//! file system under the measured directory and the source commit. Every
//! benchmark report records it (bench-results/README.md), so it lives here
//! once instead of in each bench binary.

use std::path::Path;
use std::process::Command;

/// The machine details a benchmark report records. Fields the machine
/// cannot tell are `"unknown"` (or 0), never an error: a report without a
/// kernel version is still a report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Machine {
    /// `model name` from /proc/cpuinfo.
    pub cpu_model: String,
    /// Cores this process may run on.
    pub cores: usize,
    /// The `MemTotal:` line of /proc/meminfo, as the kernel prints it.
    pub memory: String,
    /// `MemTotal` in bytes (0 if unknown).
    pub memory_bytes: u64,
    /// `uname -sr`.
    pub kernel: String,
    /// `df -T <dir>`: device, file system type, size of what was measured.
    pub file_system: String,
    /// `git rev-parse --short HEAD` of the working directory.
    pub commit: String,
}

impl Machine {
    /// Reads /proc and asks `uname`, `df` and `git`; `dir` is the directory
    /// whose file system the benchmark wrote to.
    pub fn collect(dir: &Path) -> Machine {
        let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
        let cpu_model = read("/proc/cpuinfo")
            .lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split(':').nth(1))
            .map_or_else(|| "unknown".to_string(), |m| m.trim().to_string());
        let meminfo = read("/proc/meminfo");
        let memory = meminfo.lines().next().unwrap_or("").to_string();
        Machine {
            cpu_model,
            cores: std::thread::available_parallelism().map_or(0, |n| n.get()),
            memory_bytes: mem_total_bytes(&memory),
            memory,
            kernel: command_output("uname", &["-sr"]),
            file_system: command_output("df", &["-T", &dir.to_string_lossy()]),
            commit: command_output("git", &["rev-parse", "--short", "HEAD"]),
        }
    }

    /// The report's "Machine" section body (a Markdown list).
    pub fn to_markdown(&self) -> String {
        format!(
            "- CPU: {}\n- cores: {}\n- memory: {}\n- kernel: {}\n- file system:\n```\n{}\n```\n- commit: {}\n",
            self.cpu_model, self.cores, self.memory, self.kernel, self.file_system, self.commit
        )
    }
}

/// `MemTotal:       24684084 kB` → bytes.
fn mem_total_bytes(line: &str) -> u64 {
    line.split_whitespace()
        .nth(1)
        .and_then(|kib| kib.parse::<u64>().ok())
        .map_or(0, |kib| kib * 1024)
}

/// Trimmed stdout of a command, empty if it could not run.
fn command_output(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_mem_total() {
        assert_eq!(
            mem_total_bytes("MemTotal:       24684084 kB"),
            24_684_084 * 1024
        );
        assert_eq!(mem_total_bytes(""), 0);
    }

    #[test]
    fn collects_this_machine() {
        let m = Machine::collect(Path::new("."));
        assert!(m.cores >= 1);
        let md = m.to_markdown();
        assert!(md.starts_with("- CPU: "), "{md}");
        assert!(md.contains("- commit: "), "{md}");
    }
}
