//! Process CPU and resident memory, through `sysinfo`.

use serde::Serialize;
use sysinfo::{Pid, ProcessRefreshKind, ProcessesToUpdate, System};

/// The process's figures at one sample.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
#[non_exhaustive]
pub struct ProcessFigures {
    /// CPU used since the previous sample, percent of one core (above 100
    /// when several cores are busy).
    pub cpu_percent: f64,
    /// Resident memory, bytes.
    pub resident_memory_bytes: u64,
}

/// Samples this process.
pub(crate) struct ProcessSampler {
    system: System,
    pid: Option<Pid>,
}

impl std::fmt::Debug for ProcessSampler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProcessSampler")
            .field("pid", &self.pid)
            .finish()
    }
}

impl ProcessSampler {
    pub(crate) fn new() -> Self {
        let mut sampler = Self {
            system: System::new(),
            pid: sysinfo::get_current_pid().ok(),
        };
        // CPU use is measured between two refreshes: start the first one.
        let _ = sampler.sample();
        sampler
    }

    /// Refreshes and reads this process; `None` when the platform cannot
    /// tell.
    pub(crate) fn sample(&mut self) -> Option<ProcessFigures> {
        let pid = self.pid?;
        self.system.refresh_processes_specifics(
            ProcessesToUpdate::Some(&[pid]),
            true,
            ProcessRefreshKind::nothing().with_cpu().with_memory(),
        );
        let process = self.system.process(pid)?;
        Some(ProcessFigures {
            cpu_percent: f64::from(process.cpu_usage()),
            resident_memory_bytes: process.memory(),
        })
    }
}
