//! Full disk: on a real (tiny, loop-mounted) ext4, appends fail with a clear
//! error once segments can no longer be allocated, and the log stays readable
//! and consistent up to the last acknowledged offset, also after a reopen.
//!
//! Needs root (mount). CI runs as root; elsewhere the test says why it did nothing.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{batch_of, read_all, run};
use sprawl_storage::{LogConfig, PartitionLog};

struct LoopMount {
    mountpoint: PathBuf,
}

impl LoopMount {
    fn new(root: &Path, mib: u64) -> Result<Self, String> {
        let image = root.join("fs.img");
        let mountpoint = root.join("mnt");
        std::fs::create_dir_all(&mountpoint).unwrap();
        std::fs::File::create(&image)
            .unwrap()
            .set_len(mib << 20)
            .unwrap();
        let sh = |cmd: &mut Command| -> Result<(), String> {
            let out = cmd.output().map_err(|e| e.to_string())?;
            out.status
                .success()
                .then_some(())
                .ok_or_else(|| String::from_utf8_lossy(&out.stderr).into_owned())
        };
        sh(Command::new("mkfs.ext4").args(["-q", "-F"]).arg(&image))?;
        sh(Command::new("mount")
            .args(["-o", "loop"])
            .arg(&image)
            .arg(&mountpoint))?;
        Ok(Self { mountpoint })
    }
}

impl Drop for LoopMount {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(&self.mountpoint)
            .status();
    }
}

#[test]
fn full_disk_fails_appends_cleanly_and_keeps_the_log_readable() {
    let root = tempfile::tempdir().unwrap();
    if !rustix::process::geteuid().is_root() {
        eprintln!("SKIPPED: mounting a loop file system needs root");
        return;
    }
    let mount = LoopMount::new(root.path(), 24).expect("mount a loop ext4 (root, loop devices)");
    let path = mount.mountpoint.join("topic-0");
    let cfg = || LogConfig {
        segment_bytes: 4 << 20,
        ..LogConfig::default()
    };
    let (acked, err) = run(&mount.mountpoint.clone(), {
        let path = path.clone();
        move |pool| async move {
            let log = PartitionLog::open(&path, cfg(), pool).await.unwrap();
            let mut acked = 0u64;
            let value = vec![7u8; 64 << 10];
            for _ in 0..10_000 {
                match log.append(batch_of(std::slice::from_ref(&value), 1)).await {
                    Ok(ack) => acked = ack.next_offset,
                    Err(e) => {
                        assert!(e.is_disk_full(), "expected a disk-full error, got: {e}");
                        // Appends that need a new segment keep failing cleanly.
                        let again = log.append(batch_of(std::slice::from_ref(&value), 1)).await;
                        assert!(again.is_err_and(|e| e.is_disk_full()));
                        let read = read_all(&log, 0).await;
                        assert_eq!(read.len() as u64, acked, "every acked record readable");
                        return (acked, e.to_string());
                    }
                }
            }
            panic!("a 24 MiB file system never filled up");
        }
    });
    eprintln!("append error after {acked} records: {err}");
    assert!(err.contains("No space left on device"), "{err}");
    assert!(err.contains(".log"), "error names the segment: {err}");
    assert!(acked >= 64, "a 24 MiB disk holds some 4 MiB segments");
    let records = run(&mount.mountpoint.clone(), move |pool| async move {
        let log = PartitionLog::open(&path, cfg(), pool).await.unwrap();
        assert_eq!(log.offsets().log_end, acked);
        read_all(&log, 0).await
    });
    assert_eq!(records.len() as u64, acked);
    assert!(records
        .iter()
        .all(|(_, v)| v.len() == 64 << 10 && v.iter().all(|&b| b == 7)));
    drop(mount);
}
