//! Per-executor warm-up that avoids glommio's iopoll-probe trap.
//!
//! glommio 0.9 decides per disk, on the first direct-I/O file an executor
//! opens there, whether that device supports iopoll. If that first file is
//! empty and opened read+write, the probe misfires and every later read on the
//! disk fails with EOPNOTSUPP (os error 95, glommio#670). Opening a non-empty
//! file read-only first makes the probe succeed, so each executor calls
//! [`warm_up_dir`] on every data directory before touching real files.

use std::io::Write;
use std::path::{Path, PathBuf};

use glommio::io::DmaFile;

/// Name of the probe file kept in each warmed-up directory.
pub const PROBE_FILE_NAME: &str = ".sprawl-io-probe";

/// Ensures `dir` holds a 4 KiB probe file and opens it read-only with direct
/// I/O on the current executor, reading it once. Call once per executor per
/// directory (per disk) before any other direct-I/O file there.
pub async fn warm_up_dir(dir: &Path) -> std::io::Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let probe = dir.join(PROBE_FILE_NAME);
    let is_ready = std::fs::metadata(&probe)
        .map(|m| m.len() >= crate::DIO_ALIGN as u64)
        .unwrap_or(false);
    if !is_ready {
        // Written with buffered std I/O: the point is that the file is
        // non-empty before glommio ever sees it.
        // Executors of one process warm up concurrently: one temp file each.
        let tmp = dir.join(format!(
            "{PROBE_FILE_NAME}.tmp.{}.{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&[0x5a; crate::DIO_ALIGN])?;
        f.sync_all()?;
        std::fs::rename(&tmp, &probe)?;
    }
    let file = DmaFile::open(&probe).await.map_err(std::io::Error::from)?;
    let read = file
        .read_at_aligned(0, crate::DIO_ALIGN)
        .await
        .map_err(std::io::Error::from)?;
    if read.len() != crate::DIO_ALIGN {
        return Err(std::io::Error::other(format!(
            "warm-up read of {} returned {} bytes",
            probe.display(),
            read.len()
        )));
    }
    file.close().await.map_err(std::io::Error::from)?;
    Ok(probe)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_work_after_warm_up_even_when_next_file_is_empty() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_path_buf();
        glommio::LocalExecutorBuilder::default()
            .make()
            .unwrap()
            .run(async move {
                warm_up_dir(&path).await.unwrap();
                // The trap: an empty read+write file. After warm-up, reads work.
                let f = glommio::io::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .create(true)
                    .dma_open(path.join("empty.log"))
                    .await
                    .unwrap();
                let mut buf = f.alloc_dma_buffer(4096);
                buf.as_bytes_mut().fill(7);
                f.write_at(buf, 0).await.unwrap();
                let r = f.read_at_aligned(0, 4096).await.unwrap();
                assert_eq!(r[0], 7);
                f.close().await.unwrap();
            });
    }
}
