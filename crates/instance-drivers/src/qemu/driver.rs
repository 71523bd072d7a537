//! [`QemuDriver`] as a [`Driver`]: what the REST layer sees of it.
//!
//! 1. Each method is the inherent one of the same name, its instances handed out as
//!    `Arc<dyn Instance>`.
//! 2. The version is QEMU's, from `qemu-system-x86_64 --version`, read when asked (once, when
//!    the daemon starts).

use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::broadcast;

use crate::definition::InstanceDefinition;
use crate::error::Result;
use crate::instance::{Driver, Instance};
use crate::qemu::QemuDriver;
use crate::transition::Transition;

#[async_trait]
impl Driver for QemuDriver {
    fn name(&self) -> &'static str {
        "qemu"
    }

    fn version(&self) -> Option<String> {
        qemu_version()
    }

    async fn create(&self, definition: InstanceDefinition) -> Result<Arc<dyn Instance>> {
        Ok(QemuDriver::create(self, definition).await?)
    }

    fn get(&self, project: &str, name: &str) -> Result<Arc<dyn Instance>> {
        Ok(QemuDriver::get(self, project, name)?)
    }

    fn list(&self, project: &str) -> Vec<Arc<dyn Instance>> {
        QemuDriver::list(self, project)
            .into_iter()
            .map(|instance| instance as Arc<dyn Instance>)
            .collect()
    }

    async fn delete(&self, project: &str, name: &str) -> Result<()> {
        QemuDriver::delete(self, project, name).await
    }

    async fn rename(&self, project: &str, old: &str, new: &str) -> Result<Arc<dyn Instance>> {
        Ok(QemuDriver::rename(self, project, old, new).await?)
    }

    fn transitions(&self) -> broadcast::Receiver<Transition> {
        QemuDriver::transitions(self)
    }
}

/// QEMU's version, from `qemu-system-x86_64 --version` ("QEMU emulator version 7.2.22 (...)").
fn qemu_version() -> Option<String> {
    let binary = vgashot_qemu_process::find_qemu().ok()?;
    let output = std::process::Command::new(binary)
        .arg("--version")
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&output.stdout);
    let version = text
        .lines()
        .next()?
        .strip_prefix("QEMU emulator version ")?;
    Some(version.split_whitespace().next()?.to_owned())
}
