"""ctypes bindings of libfuse3's low-level API: the functions and structures lowlevel.py calls.

mfusepy supplies the loaded library and the structures it already defines (stat, statvfs,
fuse_file_info, fuse_conn_info); the rest is declared here, field for field as in
fuse_lowlevel.h of libfuse 3.
"""

from __future__ import annotations

import ctypes
from ctypes import CFUNCTYPE, POINTER, c_char_p, c_double, c_int, c_size_t, c_uint64, c_void_p
from typing import Any

from condainer.errors import ToolMissing

c_off_t = ctypes.c_int64
req_t = c_void_p
ino_t = c_uint64


class fuse_args(ctypes.Structure):  # noqa: N801 - C name
    _fields_ = [("argc", c_int), ("argv", POINTER(c_char_p)), ("allocated", c_int)]


class fuse_ctx(ctypes.Structure):  # noqa: N801 - C name
    _fields_ = [("uid", ctypes.c_uint32), ("gid", ctypes.c_uint32), ("pid", c_int), ("umask", ctypes.c_uint32)]


def bind(mfusepy: Any) -> Any:
    """The libfuse3 functions and structures we call, or ToolMissing."""
    if mfusepy.fuse_version_major != 3:
        raise ToolMissing("the low-level FUSE layer needs libfuse3")
    c_stat, fi_p = mfusepy.c_stat, POINTER(mfusepy.fuse_file_info)
    api = type("LibFuse3", (), {})()
    api.fuse_args, api.entry_param, api.ops_t, api.c_stat, api.c_statvfs = (
        fuse_args,
        _entry_param(c_stat),
        _lowlevel_ops(fi_p, mfusepy.fuse_conn_info),
        c_stat,
        mfusepy.c_statvfs,
    )
    _declare_functions(api, mfusepy._libfuse, fi_p)
    return api


def _entry_param(c_stat: type) -> type:
    """struct fuse_entry_param, around mfusepy's struct stat."""

    class fuse_entry_param(ctypes.Structure):  # noqa: N801 - C name
        _fields_ = [
            ("ino", c_uint64),
            ("generation", c_uint64),
            ("attr", c_stat),
            ("attr_timeout", c_double),
            ("entry_timeout", c_double),
        ]

    return fuse_entry_param


def _lowlevel_ops(fi_p: Any, conn_t: type) -> type:
    """struct fuse_lowlevel_ops, field for field: a callback type where we answer, a plain pointer
    (left NULL) where libfuse's default serves."""
    ops_fields = [
        ("init", CFUNCTYPE(None, c_void_p, POINTER(conn_t))),
        ("destroy", CFUNCTYPE(None, c_void_p)),
        ("lookup", CFUNCTYPE(None, req_t, ino_t, c_char_p)),
        ("forget", c_void_p),
        ("getattr", CFUNCTYPE(None, req_t, ino_t, fi_p)),
        ("setattr", CFUNCTYPE(None, req_t)),  # write ops: only req is read (extra args are ignored
        ("readlink", CFUNCTYPE(None, req_t, ino_t)),  # by the callee in the C calling convention)
        ("mknod", CFUNCTYPE(None, req_t)),
        ("mkdir", CFUNCTYPE(None, req_t)),
        ("unlink", CFUNCTYPE(None, req_t)),
        ("rmdir", CFUNCTYPE(None, req_t)),
        ("symlink", CFUNCTYPE(None, req_t)),
        ("rename", CFUNCTYPE(None, req_t)),
        ("link", CFUNCTYPE(None, req_t)),
        ("open", CFUNCTYPE(None, req_t, ino_t, fi_p)),
        ("read", CFUNCTYPE(None, req_t, ino_t, c_size_t, c_off_t, fi_p)),
        ("write", CFUNCTYPE(None, req_t)),
        ("flush", c_void_p),
        ("release", c_void_p),
        ("fsync", c_void_p),
        ("opendir", CFUNCTYPE(None, req_t, ino_t, fi_p)),
        ("readdir", CFUNCTYPE(None, req_t, ino_t, c_size_t, c_off_t, fi_p)),
        ("releasedir", c_void_p),
        ("fsyncdir", c_void_p),
        ("statfs", CFUNCTYPE(None, req_t, ino_t)),
        ("setxattr", CFUNCTYPE(None, req_t)),
        ("getxattr", CFUNCTYPE(None, req_t, ino_t, c_char_p, c_size_t)),
        ("listxattr", CFUNCTYPE(None, req_t, ino_t, c_size_t)),
        ("removexattr", CFUNCTYPE(None, req_t)),
        ("access", CFUNCTYPE(None, req_t, ino_t, c_int)),
        ("create", CFUNCTYPE(None, req_t)),
        ("getlk", c_void_p),
        ("setlk", c_void_p),
        ("bmap", c_void_p),
        ("ioctl", c_void_p),
        ("poll", c_void_p),
        ("write_buf", c_void_p),
        ("retrieve_reply", c_void_p),
        ("forget_multi", c_void_p),
        ("flock", c_void_p),
        ("fallocate", CFUNCTYPE(None, req_t)),
        ("readdirplus", CFUNCTYPE(None, req_t, ino_t, c_size_t, c_off_t, fi_p)),
    ]

    class fuse_lowlevel_ops(ctypes.Structure):  # noqa: N801 - C name
        _fields_ = ops_fields

    return fuse_lowlevel_ops


def _declare_functions(api: Any, lib: Any, fi_p: Any) -> None:
    """Give API the library's functions we call (session, replies, directory entries), typed."""

    def fn(name, restype, *argtypes):
        f = getattr(lib, name)
        f.restype = restype
        f.argtypes = argtypes
        return f

    c_stat, c_statvfs, entry_param = api.c_stat, api.c_statvfs, api.entry_param
    api.session_new = fn(
        "fuse_session_new", c_void_p, POINTER(fuse_args), POINTER(api.ops_t), c_size_t, c_void_p
    )
    api.session_mount = fn("fuse_session_mount", c_int, c_void_p, c_char_p)
    api.session_unmount = fn("fuse_session_unmount", None, c_void_p)
    api.session_destroy = fn("fuse_session_destroy", None, c_void_p)
    api.session_exit = fn("fuse_session_exit", None, c_void_p)
    api.session_loop = fn("fuse_session_loop", c_int, c_void_p)
    api.session_loop_mt = fn("fuse_session_loop_mt_31", c_int, c_void_p, c_int)
    api.set_signal_handlers = fn("fuse_set_signal_handlers", c_int, c_void_p)
    api.remove_signal_handlers = fn("fuse_remove_signal_handlers", None, c_void_p)
    api.req_ctx = fn("fuse_req_ctx", POINTER(fuse_ctx), req_t)
    api.reply_err = fn("fuse_reply_err", c_int, req_t, c_int)
    api.reply_entry = fn("fuse_reply_entry", c_int, req_t, POINTER(entry_param))
    api.reply_attr = fn("fuse_reply_attr", c_int, req_t, POINTER(c_stat), c_double)
    api.reply_readlink = fn("fuse_reply_readlink", c_int, req_t, c_char_p)
    api.reply_open = fn("fuse_reply_open", c_int, req_t, fi_p)
    api.reply_buf = fn("fuse_reply_buf", c_int, req_t, c_void_p, c_size_t)
    api.reply_statfs = fn("fuse_reply_statfs", c_int, req_t, POINTER(c_statvfs))
    api.reply_xattr = fn("fuse_reply_xattr", c_int, req_t, c_size_t)
    api.add_direntry = fn(
        "fuse_add_direntry", c_size_t, req_t, c_void_p, c_size_t, c_char_p, POINTER(c_stat), c_off_t
    )
    api.add_direntry_plus = fn(
        "fuse_add_direntry_plus",
        c_size_t,
        req_t,
        c_void_p,
        c_size_t,
        c_char_p,
        POINTER(entry_param),
        c_off_t,
    )
