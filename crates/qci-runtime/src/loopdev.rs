//! Loop devices, by ioctl.
//!
//! Written by hand on purpose: the loopdev crates generate these bindings with bindgen at
//! build time (libclang, and tens of seconds of CI's two cores) for the three ioctls and two
//! structs below, which the kernel's UAPI (linux/loop.h) has kept stable for years.

// The ioctls below are the module's only unsafe code; each call says why it is sound.
#![allow(unsafe_code)]

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

const LOOP_CTL_GET_FREE: libc::c_ulong = 0x4C82;
const LOOP_CONFIGURE: libc::c_ulong = 0x4C0A;
const LOOP_SET_CAPACITY: libc::c_ulong = 0x4C07;
/// The device lets go of its file when its last user (the mount) goes.
const LO_FLAGS_AUTOCLEAR: u32 = 4;
const LOOP_MAJOR: u64 = 7;

#[repr(C)]
struct LoopInfo64 {
    lo_device: u64,
    lo_inode: u64,
    lo_rdevice: u64,
    lo_offset: u64,
    lo_sizelimit: u64,
    lo_number: u32,
    lo_encrypt_type: u32,
    lo_encrypt_key_size: u32,
    lo_flags: u32,
    lo_file_name: [u8; 64],
    lo_crypt_name: [u8; 64],
    lo_encrypt_key: [u8; 32],
    lo_init: [u64; 2],
}

#[repr(C)]
struct LoopConfig {
    fd: u32,
    block_size: u32,
    info: LoopInfo64,
    reserved: [u64; 8],
}

/// A loop device bound to a file. Dropping it closes the device; with autoclear, the kernel
/// then unbinds it unless something (a mount) still holds it.
pub struct LoopDevice {
    _dev: File,
    pub path: PathBuf,
}

/// Binds `image` to a free loop device, with autoclear.
pub fn attach(image: &Path) -> io::Result<LoopDevice> {
    let backing = OpenOptions::new().read(true).write(true).open(image)?;
    let ctl = OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/loop-control")
        .map_err(|e| io::Error::new(e.kind(), format!("opening /dev/loop-control: {e}")))?;
    let mut last = io::Error::other("no free loop device");
    // Another process may take the free device between asking and binding: ask again.
    for _ in 0..32 {
        // SAFETY: LOOP_CTL_GET_FREE takes no argument and returns a device number.
        let n = unsafe { libc::ioctl(ctl.as_raw_fd(), LOOP_CTL_GET_FREE as _) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let path = PathBuf::from(format!("/dev/loop{n}"));
        let dev = match OpenOptions::new().read(true).write(true).open(&path) {
            Ok(d) => d,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                // A /dev that is not devtmpfs: make the node.
                let _ = nix::sys::stat::mknod(
                    &path,
                    nix::sys::stat::SFlag::S_IFBLK,
                    nix::sys::stat::Mode::from_bits_truncate(0o660),
                    nix::sys::stat::makedev(LOOP_MAJOR, n as u64),
                );
                OpenOptions::new().read(true).write(true).open(&path)?
            }
            Err(e) => return Err(e),
        };
        // SAFETY: both structs are plain integers and byte arrays; all-zero is valid.
        let mut cfg: LoopConfig = unsafe { std::mem::zeroed() };
        cfg.fd = backing.as_raw_fd() as u32;
        cfg.info.lo_flags = LO_FLAGS_AUTOCLEAR;
        let name = image.as_os_str().as_encoded_bytes();
        let len = name.len().min(63);
        cfg.info.lo_file_name[..len].copy_from_slice(&name[..len]);
        // SAFETY: cfg outlives the call; the kernel only reads it.
        let r = unsafe { libc::ioctl(dev.as_raw_fd(), LOOP_CONFIGURE as _, &cfg) };
        if r == 0 {
            return Ok(LoopDevice { _dev: dev, path });
        }
        last = io::Error::last_os_error();
        if last.raw_os_error() != Some(libc::EBUSY) {
            return Err(io::Error::new(
                last.kind(),
                format!("binding {} to {}: {last}", image.display(), path.display()),
            ));
        }
    }
    Err(last)
}

/// Makes a loop device see its file's new size.
pub fn refresh_capacity(dev: &Path) -> io::Result<()> {
    let f = OpenOptions::new().read(true).write(true).open(dev)?;
    // SAFETY: LOOP_SET_CAPACITY takes no argument.
    let r = unsafe { libc::ioctl(f.as_raw_fd(), LOOP_SET_CAPACITY as _, 0) };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The loop devices bound to `image` (by sysfs, which names each device's file).
pub fn devices_of(image: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir("/sys/block") else {
        return vec![];
    };
    entries
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("loop"))
        .filter(|e| {
            std::fs::read_to_string(e.path().join("loop/backing_file"))
                .is_ok_and(|b| Path::new(b.trim_end_matches('\n')) == image)
        })
        .map(|e| Path::new("/dev").join(e.file_name()))
        .collect()
}
