//! A private ftrace instance: its own buffer, so neither parallel runs nor a user's own
//! tracing are disturbed. The tests' ground truth (test support, not part of the tool);
//! removed on drop.

use std::{
    fs,
    path::{Path, PathBuf},
};

use anyhow::{Context as _, Result, bail};

use collapse_trace::kernel::tracefs::Tracefs;

/// An instance under `<tracefs>/instances/`.
pub struct FtraceInstance {
    dir: PathBuf,
}

impl FtraceInstance {
    /// Creates instance `name` with `events` (`group/name`) enabled, tgids recorded and a
    /// buffer of `buffer_kb` per CPU; `filter` (ftrace filter syntax, e.g. `comm == "x"`)
    /// applies to every event.
    pub fn create(
        tracefs: &Tracefs,
        name: &str,
        events: &[&str],
        filter: Option<&str>,
        buffer_kb: u32,
    ) -> Result<Self> {
        let dir = tracefs.root().join("instances").join(name);
        fs::create_dir(&dir)
            .with_context(|| format!("creating ftrace instance {}", dir.display()))?;
        let inst = FtraceInstance { dir };
        inst.write("buffer_size_kb", &buffer_kb.to_string())?;
        inst.write("options/record-tgid", "1")?;
        for e in events {
            if let Some(f) = filter {
                inst.write(&format!("events/{e}/filter"), f)?;
            }
            inst.write(&format!("events/{e}/enable"), "1")?;
        }
        Ok(inst)
    }

    fn write(&self, file: &str, value: &str) -> Result<()> {
        let p = self.dir.join(file);
        fs::write(&p, value).with_context(|| format!("writing {value:?} to {}", p.display()))
    }

    /// Stops recording (the buffer stays readable).
    pub fn stop(&self) -> Result<()> {
        self.write("tracing_on", "0")
    }

    /// The instance directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The recorded text (bytes that are not UTF-8, as in a stale file name, replaced). Fails
    /// if any CPU's buffer overran: the record would be incomplete.
    pub fn read(&self) -> Result<String> {
        let overruns = self.overruns()?;
        if overruns > 0 {
            bail!("ftrace instance lost {overruns} events (buffer overrun): enlarge buffer_kb");
        }
        // ftrace prints file names raw: the inline-name copy of a long name can hold any bytes.
        let bytes = fs::read(self.dir.join("trace")).context("reading the instance's trace")?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }

    /// Events lost to a full buffer, over all CPUs.
    pub fn overruns(&self) -> Result<u64> {
        let mut total = 0;
        let per_cpu = self.dir.join("per_cpu");
        for cpu in
            fs::read_dir(&per_cpu).with_context(|| format!("listing {}", per_cpu.display()))?
        {
            let stats = fs::read_to_string(cpu?.path().join("stats"))?;
            for l in stats.lines() {
                if let Some(v) = l.strip_prefix("overrun:") {
                    total += v.trim().parse::<u64>().unwrap_or(0);
                }
            }
        }
        Ok(total)
    }
}

impl Drop for FtraceInstance {
    fn drop(&mut self) {
        // Events must be off before the kernel lets the instance go.
        let _ = fs::write(self.dir.join("events/enable"), "0");
        if let Err(e) = fs::remove_dir(&self.dir) {
            log::warn!(
                "could not remove ftrace instance {}: {e}",
                self.dir.display()
            );
        }
    }
}
