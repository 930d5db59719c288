//! The seam between a container's lifecycle and the host it runs on: every mount, network
//! namespace, bridge attachment, cgroup, file the node writes for a container, and every word
//! to its shim goes through [`Host`], which the [`Node`](super::Node) holds.
//!
//! [`RealHost`] does what the handlers did before the seam, call for call (the functions of
//! [`host`](super::host), [`BridgeNetwork`], [`cgroups`], [`StartingShim`] and
//! [`ShimClient`]). The unit tests give the node a recording double instead
//! (`testkit::RecordingHost`), so the lifecycle's decisions (what is set up, in which order,
//! what is undone after a failure or an exit, when a container restarts or is removed) are
//! tested without root, without a shim and without a bus server.
//!
//! Kept out of it: the container's own files (records, logs, its directory's removal), which
//! live under the node's root and need no privilege, and what a running container serves
//! (attach, exec, stats, top), which is not the lifecycle's.
//!
//! The blocking methods are called from blocking threads, as the calls they stand for were.

use std::path::{Path, PathBuf};

use futures::future::BoxFuture;

use crate::cgroups::{self, Cgroup, Layout};
use crate::network::{self, Attachment, BridgeNetwork, PortMapping};
use crate::shim::{self, ShimClient, ShimLaunch, ShimState, StartingShim};

use super::host::{self, Remap};

/// What the lifecycle asks of the host. See the module's documentation.
pub trait Host: Send + Sync {
    /// Mounts a container's overlay root ([`host::mount_rootfs`]).
    fn mount_rootfs(
        &self,
        lower: &[PathBuf],
        empty: &Path,
        upper: &Path,
        work: &Path,
        target: &Path,
        remap: Remap,
    ) -> std::io::Result<()>;
    /// Unmounts a container's root and its idmapped layers ([`host::unmount_rootfs`]).
    fn unmount_rootfs(&self, target: &Path, layers: &Path) -> std::io::Result<()>;
    /// Makes the network namespace held at `path` ([`host::create_netns`]).
    fn create_netns(&self, path: &Path) -> std::io::Result<()>;
    /// Releases the network namespace held at `path` ([`host::remove_netns`]).
    fn remove_netns(&self, path: &Path) -> std::io::Result<()>;
    /// Writes one of the files the node makes for a container (`hostname`, `resolv.conf`,
    /// `hosts`), as `std::fs::write` does.
    fn write_file(&self, path: &Path, contents: &[u8]) -> std::io::Result<()>;
    /// Binds the embedded DNS server's sockets inside the network namespace at `netns`
    /// ([`crate::dns::Listeners::open`]).
    fn dns_listen(&self, netns: &Path) -> std::io::Result<crate::dns::Listeners>;
    /// Attaches `container`'s namespace at `netns` to `bridge` ([`BridgeNetwork::attach_as`]).
    #[allow(clippy::too_many_arguments)] // the call it stands for, plus the host it runs on
    fn attach(
        &self,
        bridge: &BridgeNetwork,
        container: &str,
        netns: &Path,
        ports: &[PortMapping],
        host_interface: &str,
        interface: &str,
        want: &network::Requested,
    ) -> network::Result<Attachment>;
    /// Frees `container`'s address and ports on `bridge`, leaving its veth to the namespace's
    /// end ([`BridgeNetwork::release`]).
    fn release(&self, bridge: &BridgeNetwork, container: &str) -> network::Result<()>;
    /// Detaches `container` from `bridge` under the default veth name
    /// ([`BridgeNetwork::detach`]).
    fn detach(&self, bridge: &BridgeNetwork, container: &str) -> network::Result<()>;
    /// Detaches `container`'s veth `host_interface` from `bridge`
    /// ([`BridgeNetwork::detach_as`]).
    fn detach_as(
        &self,
        bridge: &BridgeNetwork,
        container: &str,
        host_interface: &str,
    ) -> network::Result<()>;
    /// Creates the group `path` ([`cgroups::create`]); what is done with it goes through the
    /// group's own [`Cgroup`] methods.
    fn cgroup_create(&self, layout: &Layout, path: &str) -> cgroups::Result<Box<dyn Cgroup>>;
    /// Opens the existing group `path` ([`cgroups::open`]).
    fn cgroup_open(&self, layout: &Layout, path: &str) -> cgroups::Result<Box<dyn Cgroup>>;
    /// Starts the shim process of `bundle` ahead of its launch ([`StartingShim::start`]).
    fn shim_spawn(&self, binary: &Path, bundle: &Path) -> shim::Result<PendingShim>;
    /// Hands a started shim its launch and waits until it listens ([`StartingShim::launch`]).
    fn shim_launch<'a>(
        &'a self,
        shim: PendingShim,
        launch: &'a ShimLaunch,
    ) -> BoxFuture<'a, shim::Result<()>>;
    /// Has the shim of `bundle` start the container ([`ShimClient::start`]).
    fn shim_start<'a>(&'a self, bundle: &'a Path) -> BoxFuture<'a, shim::Result<ShimState>>;
    /// Sends `signal` to the container's init through its shim ([`ShimClient::kill`]).
    fn shim_kill<'a>(&'a self, bundle: &'a Path, signal: i32) -> BoxFuture<'a, shim::Result<()>>;
    /// Waits for the container's exit ([`ShimClient::wait`]).
    fn shim_wait<'a>(&'a self, bundle: &'a Path) -> BoxFuture<'a, shim::Result<ShimState>>;
    /// The container's state as its shim has it ([`ShimClient::state`]).
    fn shim_state<'a>(&'a self, bundle: &'a Path) -> BoxFuture<'a, shim::Result<ShimState>>;
}

/// A shim process started ahead of its launch ([`Host::shim_spawn`]). Dropped without
/// [`Host::shim_launch`], its process exits on its own.
pub struct PendingShim(Option<StartingShim>);

impl PendingShim {
    /// One with no process behind it, for a double that launches nothing.
    #[cfg(test)]
    pub(crate) fn none() -> PendingShim {
        PendingShim(None)
    }
}

/// The host itself: each method is the call the handlers made before the seam.
#[derive(Debug, Default, Clone, Copy)]
pub struct RealHost;

impl Host for RealHost {
    fn mount_rootfs(
        &self,
        lower: &[PathBuf],
        empty: &Path,
        upper: &Path,
        work: &Path,
        target: &Path,
        remap: Remap,
    ) -> std::io::Result<()> {
        host::mount_rootfs(lower, empty, upper, work, target, remap)
    }

    fn unmount_rootfs(&self, target: &Path, layers: &Path) -> std::io::Result<()> {
        host::unmount_rootfs(target, layers)
    }

    fn create_netns(&self, path: &Path) -> std::io::Result<()> {
        host::create_netns(path)
    }

    fn remove_netns(&self, path: &Path) -> std::io::Result<()> {
        host::remove_netns(path)
    }

    fn write_file(&self, path: &Path, contents: &[u8]) -> std::io::Result<()> {
        std::fs::write(path, contents)
    }

    fn dns_listen(&self, netns: &Path) -> std::io::Result<crate::dns::Listeners> {
        crate::dns::Listeners::open(netns)
    }

    fn attach(
        &self,
        bridge: &BridgeNetwork,
        container: &str,
        netns: &Path,
        ports: &[PortMapping],
        host_interface: &str,
        interface: &str,
        want: &network::Requested,
    ) -> network::Result<Attachment> {
        bridge.attach_as(container, netns, ports, host_interface, interface, want)
    }

    fn release(&self, bridge: &BridgeNetwork, container: &str) -> network::Result<()> {
        bridge.release(container)
    }

    fn detach(&self, bridge: &BridgeNetwork, container: &str) -> network::Result<()> {
        bridge.detach(container)
    }

    fn detach_as(
        &self,
        bridge: &BridgeNetwork,
        container: &str,
        host_interface: &str,
    ) -> network::Result<()> {
        bridge.detach_as(container, host_interface)
    }

    fn cgroup_create(&self, layout: &Layout, path: &str) -> cgroups::Result<Box<dyn Cgroup>> {
        cgroups::create(layout, path)
    }

    fn cgroup_open(&self, layout: &Layout, path: &str) -> cgroups::Result<Box<dyn Cgroup>> {
        cgroups::open(layout, path)
    }

    fn shim_spawn(&self, binary: &Path, bundle: &Path) -> shim::Result<PendingShim> {
        StartingShim::start(binary, bundle).map(|s| PendingShim(Some(s)))
    }

    fn shim_launch<'a>(
        &'a self,
        shim: PendingShim,
        launch: &'a ShimLaunch,
    ) -> BoxFuture<'a, shim::Result<()>> {
        Box::pin(async move {
            match shim.0 {
                Some(starting) => starting.launch(launch).await.map(|_| ()),
                None => Err(shim::ShimError::Protocol(
                    "no shim process to launch".into(),
                )),
            }
        })
    }

    fn shim_start<'a>(&'a self, bundle: &'a Path) -> BoxFuture<'a, shim::Result<ShimState>> {
        Box::pin(async move { ShimClient::open(bundle).start().await })
    }

    fn shim_kill<'a>(&'a self, bundle: &'a Path, signal: i32) -> BoxFuture<'a, shim::Result<()>> {
        Box::pin(async move { ShimClient::open(bundle).kill(signal).await })
    }

    fn shim_wait<'a>(&'a self, bundle: &'a Path) -> BoxFuture<'a, shim::Result<ShimState>> {
        Box::pin(async move { ShimClient::open(bundle).wait().await })
    }

    fn shim_state<'a>(&'a self, bundle: &'a Path) -> BoxFuture<'a, shim::Result<ShimState>> {
        Box::pin(async move { ShimClient::open(bundle).state().await })
    }
}
