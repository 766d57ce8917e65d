//! Open files: the `struct file` behind a descriptor, its inode, and dentry names.

use super::{
    globals::off,
    task::{read, read_ptr},
    user::kernel_str,
};

/// `struct file *` behind descriptor `fd` of `task`, or 0.
#[inline(always)]
pub fn fd_file(task: usize, fd: i64) -> usize {
    fd_file_inner(task, fd).unwrap_or(0)
}

#[inline(always)]
fn fd_file_inner(task: usize, fd: i64) -> Result<usize, i64> {
    if fd < 0 {
        return Err(-1);
    }
    let o = off();
    let files = read_ptr(task, o.task_files)?;
    let fdt = read_ptr(files, o.files_fdt)?;
    let max: u32 = read(fdt, o.fdt_max_fds)?;
    if fd as u64 >= max as u64 {
        return Err(-1);
    }
    let fds = read_ptr(fdt, o.fdt_fd)?;
    read_ptr(fds, (fd as u32) * 8)
}

/// Inode number of the file behind `file`, 0 if unreadable.
#[inline(always)]
pub fn file_ino(file: usize) -> u64 {
    let o = off();
    read_ptr(file, o.file_inode)
        .and_then(|inode| read::<u64>(inode, o.inode_ino))
        .unwrap_or(0)
}

/// Inode number, device and link count of the file behind `file`.
#[inline(always)]
pub fn file_identity(file: usize) -> Result<(u64, u32, u32), i64> {
    let o = off();
    let inode = read_ptr(file, o.file_inode)?;
    let ino: u64 = read(inode, o.inode_ino)?;
    let nlink: u32 = read(inode, o.inode_nlink)?;
    let sb = read_ptr(inode, o.inode_sb)?;
    let dev: u32 = read(sb, o.sb_dev)?;
    Ok((ino, dev, nlink))
}

/// The `struct dentry *` of `file`.
#[inline(always)]
pub fn file_dentry(file: usize) -> Result<usize, i64> {
    read_ptr(file, off().file_dentry)
}

/// Copies the name of `dentry` (its last path component) into `dst`; returns its length.
#[inline(always)]
pub fn dentry_name<const N: usize>(dentry: usize, dst: *mut [u8; N]) -> Result<u32, i64> {
    let name = read_ptr(dentry, off().dentry_name)?;
    Ok(kernel_str(name, dst))
}

/// Copies the name of the file behind `file` (its dentry's name) into `dst`.
#[inline(always)]
pub fn file_name<const N: usize>(file: usize, dst: *mut [u8; N]) -> Result<u32, i64> {
    dentry_name(file_dentry(file)?, dst)
}
