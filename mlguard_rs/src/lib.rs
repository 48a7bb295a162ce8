//! Python bindings for the ML Guard kernels. Glue only: parsing lives in sibling modules
//! (plain Rust, unit-tested with `cargo test --no-default-features`); this file converts
//! types, releases the GIL while a kernel runs and returns plain Python data.

pub mod gguf;
pub mod hash;
pub mod pickle;
pub mod protobuf;
pub mod safetensors;
pub mod secrets;
pub mod zip;

#[cfg(feature = "python")]
mod bindings {
    use crate::pickle::{self, ArgValue, Facts, Text};
    use pyo3::exceptions::PyValueError;
    use pyo3::intern;
    use pyo3::prelude::*;
    use pyo3::types::{PyBytes, PyDict, PyList, PyString};

    /// Borrowed bytes of any object that supports the buffer protocol.
    ///
    /// `bytes` are read in place. Other objects (bytearray, memoryview, mmap, ...) are read
    /// through `PyObject_GetBuffer`, declared here because pyo3-ffi only exposes it for the
    /// 3.11+ limited API while the wheel targets abi3-py39: the function and `Py_buffer`
    /// layout are the same in every CPython 3 (and are Stable ABI since 3.11). Windows'
    /// `python3.dll` does not export it before 3.11, so there the data is copied once.
    enum Input<'py> {
        Bytes(Bound<'py, PyBytes>),
        #[cfg(not(windows))]
        Buffer(raw::Buffer),
    }

    impl<'py> Input<'py> {
        fn new(data: &Bound<'py, PyAny>) -> PyResult<Self> {
            if let Ok(b) = data.cast::<PyBytes>() {
                return Ok(Input::Bytes(b.clone()));
            }
            #[cfg(not(windows))]
            {
                raw::Buffer::get(data).map(Input::Buffer)
            }
            #[cfg(windows)]
            {
                let copied = data.py().get_type::<PyBytes>().call1((data,))?;
                Ok(Input::Bytes(copied.cast_into::<PyBytes>()?))
            }
        }

        fn as_slice(&self) -> &[u8] {
            match self {
                Input::Bytes(b) => b.as_bytes(),
                #[cfg(not(windows))]
                Input::Buffer(buf) => buf.as_slice(),
            }
        }
    }

    #[cfg(not(windows))]
    mod raw {
        use pyo3::ffi;
        use pyo3::prelude::*;
        use std::os::raw::{c_char, c_int, c_void};

        #[repr(C)]
        struct PyBufferView {
            buf: *mut c_void,
            obj: *mut ffi::PyObject,
            len: ffi::Py_ssize_t,
            itemsize: ffi::Py_ssize_t,
            readonly: c_int,
            ndim: c_int,
            format: *mut c_char,
            shape: *mut ffi::Py_ssize_t,
            strides: *mut ffi::Py_ssize_t,
            suboffsets: *mut ffi::Py_ssize_t,
            internal: *mut c_void,
        }

        extern "C" {
            fn PyObject_GetBuffer(
                obj: *mut ffi::PyObject,
                view: *mut PyBufferView,
                flags: c_int,
            ) -> c_int;
            fn PyBuffer_Release(view: *mut PyBufferView);
        }

        /// PyBUF_SIMPLE: a contiguous, read-only view of the bytes.
        const PYBUF_SIMPLE: c_int = 0;

        /// An exported buffer, released on drop (the GIL is held whenever this is dropped:
        /// it never enters a `detach` closure, only the slice does).
        pub struct Buffer {
            view: Box<PyBufferView>,
        }

        impl Buffer {
            pub fn get(obj: &Bound<'_, PyAny>) -> PyResult<Self> {
                let mut view = Box::new(PyBufferView {
                    buf: std::ptr::null_mut(),
                    obj: std::ptr::null_mut(),
                    len: 0,
                    itemsize: 0,
                    readonly: 0,
                    ndim: 0,
                    format: std::ptr::null_mut(),
                    shape: std::ptr::null_mut(),
                    strides: std::ptr::null_mut(),
                    suboffsets: std::ptr::null_mut(),
                    internal: std::ptr::null_mut(),
                });
                // SAFETY: `obj` is a live object (GIL held) and `view` points to writable memory
                // of the Py_buffer layout.
                let rc = unsafe { PyObject_GetBuffer(obj.as_ptr(), &mut *view, PYBUF_SIMPLE) };
                if rc != 0 {
                    return Err(PyErr::fetch(obj.py()));
                }
                Ok(Buffer { view })
            }

            pub fn as_slice(&self) -> &[u8] {
                let len = usize::try_from(self.view.len).unwrap_or(0);
                if len == 0 || self.view.buf.is_null() {
                    return &[];
                }
                // SAFETY: a PyBUF_SIMPLE export is `len` contiguous bytes at `buf`, valid until
                // PyBuffer_Release (in Drop). The exporter cannot resize while exported; a
                // concurrent in-place write by another thread to a *writable* buffer can make the
                // facts inconsistent but cannot make the parser read out of bounds.
                unsafe { std::slice::from_raw_parts(self.view.buf as *const u8, len) }
            }
        }

        impl Drop for Buffer {
            fn drop(&mut self) {
                // SAFETY: the view was filled by a successful PyObject_GetBuffer and is released
                // exactly once; Buffer is !Send and only dropped while attached to Python.
                unsafe { PyBuffer_Release(&mut *self.view) }
            }
        }
    }

    fn text_to_py<'py>(py: Python<'py>, t: &Text) -> PyResult<Bound<'py, PyAny>> {
        match t.as_str() {
            Some(s) => Ok(PyString::new(py, s).into_any()),
            None => {
                let b = PyBytes::new(py, t.as_bytes());
                Ok(
                    PyString::from_encoded_object(&b, Some(c"utf-8"), Some(c"surrogatepass"))?
                        .into_any(),
                )
            }
        }
    }

    fn opname(code: u8) -> &'static str {
        pickle::opcode_name(code).unwrap_or("?")
    }

    fn facts_to_py<'py>(py: Python<'py>, f: &Facts) -> PyResult<Bound<'py, PyDict>> {
        let k_pickle = intern!(py, "pickle");
        let k_offset = intern!(py, "offset");
        let k_opcode = intern!(py, "opcode");
        let k_count = intern!(py, "count");

        let pickles = PyList::empty(py);
        for p in &f.pickles {
            let d = PyDict::new(py);
            d.set_item(intern!(py, "index"), p.index)?;
            d.set_item(intern!(py, "parent"), p.parent)?;
            d.set_item(intern!(py, "start"), p.start)?;
            d.set_item(intern!(py, "end"), p.end)?;
            d.set_item(intern!(py, "frame_end"), p.frame_end)?;
            d.set_item(intern!(py, "protocol"), p.protocol)?;
            d.set_item(intern!(py, "opcodes"), p.opcodes)?;
            d.set_item(intern!(py, "status"), p.status.as_str())?;
            d.set_item(intern!(py, "error"), p.error.map(|e| e.as_str()))?;
            d.set_item(intern!(py, "error_offset"), p.error_offset)?;
            let violations = PyList::empty(py);
            for v in &p.frame_violations {
                let vd = PyDict::new(py);
                vd.set_item(k_offset, v.offset)?;
                vd.set_item(intern!(py, "kind"), v.kind.as_str())?;
                violations.append(vd)?;
            }
            d.set_item(intern!(py, "frame_violations"), violations)?;
            d.set_item(intern!(py, "memo_dropped"), p.memo_dropped)?;
            pickles.append(d)?;
        }

        let globals = PyList::empty(py);
        for g in &f.globals {
            let d = PyDict::new(py);
            d.set_item(k_pickle, g.pickle)?;
            d.set_item(k_offset, g.offset)?;
            d.set_item(k_opcode, opname(g.opcode))?;
            match &g.module {
                Some(t) => d.set_item(intern!(py, "module"), text_to_py(py, t)?)?,
                None => d.set_item(intern!(py, "module"), py.None())?,
            }
            match &g.name {
                Some(t) => d.set_item(intern!(py, "name"), text_to_py(py, t)?)?,
                None => d.set_item(intern!(py, "name"), py.None())?,
            }
            d.set_item(intern!(py, "resolution"), g.resolution.as_str())?;
            d.set_item(intern!(py, "protocol"), g.protocol)?;
            d.set_item(intern!(py, "truncated"), g.truncated)?;
            d.set_item(intern!(py, "count"), g.count)?;
            globals.append(d)?;
        }

        let calls = PyList::empty(py);
        for c in &f.calls {
            let d = PyDict::new(py);
            d.set_item(k_pickle, c.pickle)?;
            d.set_item(k_offset, c.offset)?;
            d.set_item(k_opcode, opname(c.opcode))?;
            d.set_item(intern!(py, "target"), c.target)?;
            let args = PyList::empty(py);
            for a in &c.args {
                let ad = PyDict::new(py);
                ad.set_item(intern!(py, "index"), a.index)?;
                ad.set_item(intern!(py, "kind"), a.kind_str())?;
                match a.value {
                    ArgValue::Literal { offset, length, .. } => {
                        ad.set_item(k_offset, offset)?;
                        ad.set_item(intern!(py, "length"), length)?;
                    }
                    // no offset/length keys: the value is globals[index]
                    ArgValue::Global(g) => ad.set_item(intern!(py, "global"), g)?,
                }
                args.append(ad)?;
            }
            d.set_item(intern!(py, "args"), args)?;
            d.set_item(k_count, c.count)?;
            calls.append(d)?;
        }

        let ext = PyList::empty(py);
        for e in &f.ext {
            let d = PyDict::new(py);
            d.set_item(k_pickle, e.pickle)?;
            d.set_item(k_offset, e.offset)?;
            d.set_item(k_opcode, opname(e.opcode))?;
            d.set_item(intern!(py, "code"), e.code)?;
            ext.append(d)?;
        }

        let pids = PyList::empty(py);
        for p in &f.persistent_ids {
            let d = PyDict::new(py);
            d.set_item(k_pickle, p.pickle)?;
            d.set_item(k_offset, p.offset)?;
            d.set_item(k_opcode, opname(p.opcode))?;
            d.set_item(k_count, p.count)?;
            pids.append(d)?;
        }

        let counts = PyDict::new(py);
        for (name, n) in f.named_opcode_counts() {
            counts.set_item(name, n)?;
        }

        let out = PyDict::new(py);
        out.set_item(intern!(py, "pickles"), pickles)?;
        out.set_item(intern!(py, "globals"), globals)?;
        out.set_item(intern!(py, "calls"), calls)?;
        out.set_item(intern!(py, "ext"), ext)?;
        out.set_item(intern!(py, "persistent_ids"), pids)?;
        let spans = PyList::empty(py);
        for r in &f.raw_spans {
            let d = PyDict::new(py);
            d.set_item(k_pickle, r.pickle)?;
            d.set_item(k_offset, r.offset)?;
            d.set_item(intern!(py, "length"), r.length)?;
            d.set_item(intern!(py, "padding"), r.padding)?;
            d.set_item(intern!(py, "kind"), r.kind())?;
            spans.append(d)?;
        }
        out.set_item(intern!(py, "raw_spans"), spans)?;
        out.set_item(intern!(py, "opcode_counts"), counts)?;
        out.set_item(intern!(py, "limit"), f.limit.map(|l| l.as_str()))?;
        match f.trailing {
            Some(t) => {
                let d = PyDict::new(py);
                d.set_item(k_offset, t.offset)?;
                d.set_item(intern!(py, "length"), t.length)?;
                out.set_item(intern!(py, "trailing"), d)?;
            }
            None => out.set_item(intern!(py, "trailing"), py.None())?,
        }
        Ok(out)
    }

    /// pickle_facts(data, *, max_opcodes, max_memo, max_stack, max_pickles, max_string,
    ///              max_facts, follow_joblib=True, compact=False)
    ///
    /// Facts about the pickle(s) in a bytes-like object; see `mlguard.engine.pickle_facts`,
    /// which is the supported entry point. The GIL is released while parsing.
    #[pyfunction]
    #[pyo3(signature = (data, *, max_opcodes, max_memo, max_stack, max_pickles, max_string, max_facts, follow_joblib=true, compact=false))]
    #[allow(clippy::too_many_arguments)] // one keyword argument per limit
    fn pickle_facts<'py>(
        py: Python<'py>,
        data: &Bound<'py, PyAny>,
        max_opcodes: u64,
        max_memo: u64,
        max_stack: u64,
        max_pickles: u64,
        max_string: u64,
        max_facts: u64,
        follow_joblib: bool,
        compact: bool,
    ) -> PyResult<Bound<'py, PyDict>> {
        let (limits, opts) = pickle_settings(
            [max_opcodes, max_memo, max_stack, max_pickles, max_string, max_facts],
            follow_joblib,
            compact,
        )?;
        let input = Input::new(data)?;
        let slice: &[u8] = input.as_slice();
        let facts = py.detach(|| pickle::analyze_with(slice, &limits, &opts, None));
        let out = facts_to_py(py, &facts);
        drop(input);
        out
    }

    /// The kernel's limits and options from the keyword arguments shared by both entry points
    /// (`[max_opcodes, max_memo, max_stack, max_pickles, max_string, max_facts]`).
    fn pickle_settings(
        limits: [u64; 6],
        follow_joblib: bool,
        compact: bool,
    ) -> PyResult<(pickle::Limits, pickle::Options)> {
        let [max_opcodes, max_memo, max_stack, max_pickles, max_string, max_facts] = limits;
        if max_string > u32::MAX as u64 {
            return Err(PyValueError::new_err("max_string is too large"));
        }
        let limits = pickle::Limits {
            max_opcodes,
            max_memo,
            max_stack,
            max_pickles,
            max_string,
            max_facts,
        };
        let opts = pickle::Options {
            follow_joblib,
            compact,
        };
        Ok((limits, opts))
    }

    /// pickle_facts_file(path, offset, length, *, max_opcodes, ..., follow_joblib=True,
    ///                   compact=False)
    ///
    /// `pickle_facts` of `length` bytes (None: the rest) of a file from `offset`, read through
    /// a private mapping whose pages are released behind the parser. GIL released.
    #[pyfunction]
    #[pyo3(signature = (path, offset, length, *, max_opcodes, max_memo, max_stack, max_pickles, max_string, max_facts, follow_joblib=true, compact=false))]
    #[allow(clippy::too_many_arguments)] // one keyword argument per limit
    fn pickle_facts_file<'py>(
        py: Python<'py>,
        path: std::path::PathBuf,
        offset: u64,
        length: Option<u64>,
        max_opcodes: u64,
        max_memo: u64,
        max_stack: u64,
        max_pickles: u64,
        max_string: u64,
        max_facts: u64,
        follow_joblib: bool,
        compact: bool,
    ) -> PyResult<Bound<'py, PyDict>> {
        let (limits, opts) = pickle_settings(
            [max_opcodes, max_memo, max_stack, max_pickles, max_string, max_facts],
            follow_joblib,
            compact,
        )?;
        let facts = py
            .detach(|| pickle::analyze_file(&path, offset, length, &limits, &opts))
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::InvalidInput => PyValueError::new_err(e.to_string()),
                _ => PyErr::from(e),
            })?;
        facts_to_py(py, &facts)
    }

    // ---------------------------------------------------------------- zip kernel (zip.rs) ----
    // Kept apart from the pickle bindings above: conversion of `zip::Facts` to plain Python data.

    fn zip_member_to_py<'py>(py: Python<'py>, m: &crate::zip::Member) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        d.set_item(intern!(py, "index"), m.index)?;
        d.set_item(intern!(py, "central"), m.central)?;
        d.set_item(intern!(py, "name"), m.name.as_ref())?;
        d.set_item(intern!(py, "header_offset"), m.header_offset)?;
        d.set_item(intern!(py, "method"), m.method)?;
        d.set_item(intern!(py, "flags"), m.flags)?;
        d.set_item(intern!(py, "crc32"), m.crc32)?;
        d.set_item(intern!(py, "compressed_size"), m.compressed_size)?;
        d.set_item(intern!(py, "uncompressed_size"), m.uncompressed_size)?;
        match &m.local {
            Some(l) => {
                let ld = PyDict::new(py);
                ld.set_item(intern!(py, "name"), l.name.as_str())?;
                ld.set_item(intern!(py, "flags"), l.flags)?;
                ld.set_item(intern!(py, "method"), l.method)?;
                ld.set_item(intern!(py, "crc32"), l.crc32)?;
                ld.set_item(intern!(py, "compressed_size"), l.compressed_size)?;
                ld.set_item(intern!(py, "uncompressed_size"), l.uncompressed_size)?;
                ld.set_item(intern!(py, "extra_length"), l.extra_length)?;
                d.set_item(intern!(py, "local"), ld)?;
            }
            None => d.set_item(intern!(py, "local"), py.None())?,
        }
        d.set_item(intern!(py, "data_offset"), m.data_offset)?;
        match &m.descriptor {
            Some(x) => {
                let dd = PyDict::new(py);
                dd.set_item(intern!(py, "crc32"), x.crc32)?;
                dd.set_item(intern!(py, "compressed_size"), x.compressed_size)?;
                dd.set_item(intern!(py, "uncompressed_size"), x.uncompressed_size)?;
                dd.set_item(intern!(py, "signature"), x.signature)?;
                d.set_item(intern!(py, "descriptor"), dd)?;
            }
            None => d.set_item(intern!(py, "descriptor"), py.None())?,
        }
        d.set_item(intern!(py, "mismatch"), PyList::new(py, m.mismatch.iter())?)?;
        d.set_item(intern!(py, "duplicate"), m.duplicate)?;
        d.set_item(intern!(py, "encrypted"), m.encrypted())?;
        d.set_item(intern!(py, "overlap"), m.overlap)?;
        match m.head {
            Some(h) => d.set_item(intern!(py, "head"), PyBytes::new(py, h))?,
            None => d.set_item(intern!(py, "head"), py.None())?,
        }
        d.set_item(intern!(py, "errors"), PyList::new(py, m.errors.iter())?)?;
        Ok(d)
    }

    fn zip_facts_to_py<'py>(py: Python<'py>, f: &crate::zip::Facts) -> PyResult<Bound<'py, PyDict>> {
        let k_offset = intern!(py, "offset");
        let out = PyDict::new(py);
        out.set_item(intern!(py, "size"), f.size)?;
        match &f.eocd {
            Some(e) => {
                let d = PyDict::new(py);
                d.set_item(k_offset, e.offset)?;
                d.set_item(intern!(py, "disk"), e.disk)?;
                d.set_item(intern!(py, "cd_disk"), e.cd_disk)?;
                d.set_item(intern!(py, "entries_disk"), e.entries_disk)?;
                d.set_item(intern!(py, "entries"), e.entries)?;
                d.set_item(intern!(py, "cd_size"), e.cd_size)?;
                d.set_item(intern!(py, "cd_offset"), e.cd_offset)?;
                d.set_item(intern!(py, "comment_length"), e.comment_length)?;
                out.set_item(intern!(py, "eocd"), d)?;
            }
            None => out.set_item(intern!(py, "eocd"), py.None())?,
        }
        match &f.zip64 {
            Some(z) => {
                let d = PyDict::new(py);
                d.set_item(intern!(py, "locator_offset"), z.locator_offset)?;
                d.set_item(intern!(py, "declared_offset"), z.declared_offset)?;
                d.set_item(k_offset, z.offset)?;
                d.set_item(intern!(py, "entries"), z.entries)?;
                d.set_item(intern!(py, "cd_size"), z.cd_size)?;
                d.set_item(intern!(py, "cd_offset"), z.cd_offset)?;
                out.set_item(intern!(py, "zip64"), d)?;
            }
            None => out.set_item(intern!(py, "zip64"), py.None())?,
        }
        out.set_item(intern!(py, "cd_start"), f.cd_start)?;
        out.set_item(intern!(py, "shift"), f.shift)?;
        out.set_item(intern!(py, "start"), f.start)?;
        out.set_item(intern!(py, "trailing"), f.trailing)?;
        out.set_item(intern!(py, "entries_declared"), f.entries_declared)?;
        out.set_item(intern!(py, "entries_found"), f.entries_found)?;
        let members = PyList::empty(py);
        for m in &f.members {
            members.append(zip_member_to_py(py, m)?)?;
        }
        out.set_item(intern!(py, "members"), members)?;
        let skimmed = PyList::empty(py);
        for s in &f.skimmed {
            let d = PyDict::new(py);
            d.set_item(intern!(py, "dir"), s.dir.as_str())?;
            d.set_item(intern!(py, "members"), s.members)?;
            d.set_item(intern!(py, "compressed_size"), s.compressed_size)?;
            skimmed.append(d)?;
        }
        out.set_item(intern!(py, "skimmed"), skimmed)?;
        let gaps = PyList::empty(py);
        for g in &f.gaps {
            let d = PyDict::new(py);
            d.set_item(k_offset, g.offset)?;
            d.set_item(intern!(py, "length"), g.length)?;
            gaps.append(d)?;
        }
        out.set_item(intern!(py, "gaps"), gaps)?;
        let errors = PyList::empty(py);
        for e in &f.errors {
            let d = PyDict::new(py);
            d.set_item(intern!(py, "code"), e.code)?;
            d.set_item(k_offset, e.offset)?;
            errors.append(d)?;
        }
        out.set_item(intern!(py, "errors"), errors)?;
        out.set_item(intern!(py, "limit"), f.limit)?;
        Ok(out)
    }

    /// zip_facts(data, *, max_members, max_name_bytes, local_headers, skim_dir, skim_min)
    ///
    /// Facts about the zip structure of a bytes-like object; see `mlguard.engine.zip_facts`,
    /// which is the supported entry point. The GIL is released while parsing.
    #[pyfunction]
    #[pyo3(signature = (data, *, max_members, max_name_bytes, local_headers, skim_dir, skim_min))]
    fn zip_facts<'py>(
        py: Python<'py>,
        data: &Bound<'py, PyAny>,
        max_members: u64,
        max_name_bytes: u64,
        local_headers: bool,
        skim_dir: Option<String>,
        skim_min: u64,
    ) -> PyResult<Bound<'py, PyDict>> {
        let limits = crate::zip::Limits { max_members, max_name_bytes };
        let opts = crate::zip::Options { local_headers, skim_dir: skim_dir.as_deref(), skim_min };
        let input = Input::new(data)?;
        let slice: &[u8] = input.as_slice();
        let facts = py.detach(|| crate::zip::analyze(slice, &limits, &opts));
        let out = zip_facts_to_py(py, &facts);
        drop(facts);
        drop(input);
        out
    }

    /// `f` of a bytes-like object (read in place), with the GIL released for 64 KiB and more.
    fn of_bytes<T: Send>(
        py: Python<'_>,
        data: &Bound<'_, PyAny>,
        f: impl Fn(&[u8]) -> T + Sync,
    ) -> PyResult<T> {
        let input = Input::new(data)?;
        let slice: &[u8] = input.as_slice();
        let out = if slice.len() < 1 << 16 {
            f(slice)
        } else {
            py.detach(|| f(slice))
        };
        drop(input);
        Ok(out)
    }

    /// crc32(data) -> int
    ///
    /// zlib's CRC-32 of a bytes-like object; see `mlguard.engine.crc32`, the supported entry
    /// point. The GIL is released for 64 KiB and more.
    #[pyfunction]
    fn crc32(py: Python<'_>, data: &Bound<'_, PyAny>) -> PyResult<u32> {
        of_bytes(py, data, crc32fast::hash)
    }
    // ------------------------------------------------------------ end of zip kernel bindings ----

    /// sha256(data) -> str
    ///
    /// SHA-256 of a bytes-like object as 64 lowercase hexadecimal digits; see
    /// `mlguard.engine.sha256`, the supported entry point. The GIL is released for 64 KiB and more.
    #[pyfunction]
    fn sha256(py: Python<'_>, data: &Bound<'_, PyAny>) -> PyResult<String> {
        use sha2::Digest;
        of_bytes(py, data, |s| crate::hash::to_hex(&sha2::Sha256::digest(s)))
    }

    // ------------------------------------------------------------- protobuf walk (protobuf.rs) ----

    fn message_to_py<'py>(py: Python<'py>, m: &crate::protobuf::Message) -> PyResult<Bound<'py, PyDict>> {
        use crate::protobuf::Value;
        let out = PyDict::new(py);
        for (name, value) in &m.fields {
            match value {
                Value::Int(v) | Value::Length(v) => out.set_item(name, *v)?,
                Value::Str(s) => out.set_item(name, s)?,
                Value::Strs(list) => out.set_item(name, list)?,
                Value::Msg(inner) => out.set_item(name, message_to_py(py, inner)?)?,
                Value::Msgs(list) => {
                    let items = PyList::empty(py);
                    for inner in list {
                        items.append(message_to_py(py, inner)?)?;
                    }
                    out.set_item(name, items)?
                }
            }
        }
        Ok(out)
    }

    /// protobuf_walk(data, schema, root)
    ///
    /// ``schema``: one list per message type of (field number, name, kind, message index) with kind
    /// 0 int, 1 str, 2 strs, 3 msg, 4 msgs, 5 skip. See ``mlguard.engine.protobuf_walk``, the
    /// supported entry point. The GIL is released while walking.
    #[pyfunction]
    fn protobuf_walk<'py>(
        py: Python<'py>,
        data: &Bound<'py, PyAny>,
        schema: Vec<Vec<(u64, String, u8, usize)>>,
        root: usize,
    ) -> PyResult<Bound<'py, PyDict>> {
        use crate::protobuf::{Field, Kind, Schema};
        let count = schema.len();
        let mut compiled = Schema::default();
        for fields in schema {
            let mut map = std::collections::HashMap::new();
            for (number, name, kind, sub) in fields {
                let kind = match (kind, sub < count) {
                    (0, _) => Kind::Int,
                    (1, _) => Kind::Str,
                    (2, _) => Kind::Strs,
                    (3, true) => Kind::Msg(sub),
                    (4, true) => Kind::Msgs(sub),
                    (5, _) => Kind::Skip,
                    _ => return Err(PyValueError::new_err(format!("bad schema entry for field {number}"))),
                };
                map.insert(number, Field { name, kind });
            }
            compiled.messages.push(map);
        }
        if root >= count {
            return Err(PyValueError::new_err("root message index out of range"));
        }
        let input = Input::new(data)?;
        let slice: &[u8] = input.as_slice();
        let walked = py.detach(|| crate::protobuf::walk(slice, &compiled, root));
        drop(input);
        let out = message_to_py(py, &walked.root)?;
        match walked.error {
            Some(e) => {
                let err = PyDict::new(py);
                err.set_item(intern!(py, "kind"), e.kind)?;
                err.set_item(intern!(py, "offset"), e.offset)?;
                out.set_item(intern!(py, "_error"), err)?
            }
            None => out.set_item(intern!(py, "_error"), py.None())?,
        }
        Ok(out)
    }

    // ------------------------------------------------------------- SHA-256 (hash.rs) ----

    /// An `OSError` like the one `open()` raises: `OSError(errno, strerror, filename)`, which
    /// Python maps to its subclass (FileNotFoundError, PermissionError, IsADirectoryError, ...).
    fn os_error_with_path(e: &std::io::Error, path: &Bound<'_, PyAny>) -> PyErr {
        let text = e.to_string();
        match e.raw_os_error() {
            Some(code) => {
                let suffix = format!(" (os error {code})");
                let strerror = text.strip_suffix(suffix.as_str()).unwrap_or(&text).to_owned();
                pyo3::exceptions::PyOSError::new_err((code, strerror, path.clone().unbind()))
            }
            None => {
                pyo3::exceptions::PyOSError::new_err((path.py().None(), text, path.clone().unbind()))
            }
        }
    }

    /// sha256_file(path) -> str
    ///
    /// SHA-256 of a file as 64 lowercase hex digits, streamed through a fixed 1 MiB buffer; see
    /// `mlguard.engine.sha256_file`, the supported entry point. The GIL is released while the
    /// file is read and hashed. Raises OSError (with the path) if it cannot be opened or read.
    #[pyfunction]
    fn sha256_file(py: Python<'_>, path: &Bound<'_, PyAny>) -> PyResult<String> {
        let fs_path: std::path::PathBuf = path.extract()?;
        py.detach(|| crate::hash::sha256_file_hex(&fs_path))
            .map_err(|e| os_error_with_path(&e, path))
    }

    /// sha256_files(paths, jobs) -> list[str | OSError]
    ///
    /// `sha256_file` of each path, by up to `jobs` threads, with the GIL released for the whole
    /// batch; see `mlguard.engine.sha256_files`. A file that cannot be hashed gets its OSError
    /// (with the path) in its slot instead of a digest.
    #[pyfunction]
    fn sha256_files<'py>(
        py: Python<'py>,
        paths: Vec<Bound<'py, PyAny>>,
        jobs: usize,
    ) -> PyResult<Bound<'py, PyList>> {
        let fs_paths = paths
            .iter()
            .map(|p| p.extract::<std::path::PathBuf>())
            .collect::<PyResult<Vec<_>>>()?;
        let results = py.detach(|| crate::hash::sha256_files(&fs_paths, jobs));
        let out = PyList::empty(py);
        for (result, path) in results.iter().zip(&paths) {
            match result {
                Ok(digest) => out.append(crate::hash::to_hex(digest))?,
                Err(e) => out.append(os_error_with_path(e, path).into_value(py))?,
            }
        }
        Ok(out)
    }

    // ------------------------------------------------------- secret rules (secrets.rs) ----

    /// SecretRules(rules: list[tuple[list[str], str, int, float]])
    ///
    /// A compiled secret rule set, one (keywords, pattern, window, min_entropy) per rule; see
    /// `mlguard.engine.SecretRuleSet`, the supported entry point. Raises
    /// `ValueError(rule_index, message)` when a rule does not compile.
    #[pyclass(frozen, module = "mlguard_rs")]
    struct SecretRules(crate::secrets::RuleSet);

    #[pymethods]
    impl SecretRules {
        #[new]
        fn new(rules: Vec<(Vec<String>, String, usize, f64)>) -> PyResult<Self> {
            let rules: Vec<crate::secrets::Rule> = rules
                .into_iter()
                .map(|(keywords, pattern, window, min_entropy)| crate::secrets::Rule {
                    keywords: keywords.into_iter().map(String::into_bytes).collect(),
                    pattern,
                    window,
                    min_entropy,
                })
                .collect();
            crate::secrets::RuleSet::new(&rules)
                .map(SecretRules)
                .map_err(|e| PyValueError::new_err((e.rule, e.message)))
        }

        /// find(data, max_matches) -> list[dict]
        ///
        /// The matches in a bytes-like object; see `mlguard.engine.secret_matches`. The GIL is
        /// released for the whole search. Raises `ValueError(rule_index, message)` when a rule's
        /// regex, compiled on first use, does not compile.
        fn find<'py>(
            &self,
            py: Python<'py>,
            data: &Bound<'py, PyAny>,
            max_matches: usize,
        ) -> PyResult<Bound<'py, PyList>> {
            let input = Input::new(data)?;
            let slice: &[u8] = input.as_slice();
            let matches = py
                .detach(|| self.0.find(slice, max_matches))
                .map_err(|e| PyValueError::new_err((e.rule, e.message)))?;
            drop(input);
            let out = PyList::empty(py);
            for m in &matches {
                let d = PyDict::new(py);
                d.set_item(intern!(py, "rule"), m.rule)?;
                d.set_item(intern!(py, "start"), m.start)?;
                d.set_item(intern!(py, "end"), m.end)?;
                d.set_item(intern!(py, "secret_start"), m.secret_start)?;
                d.set_item(intern!(py, "secret_end"), m.secret_end)?;
                d.set_item(intern!(py, "entropy"), m.entropy)?;
                out.append(d)?;
            }
            Ok(out)
        }
    }

    #[pymodule]
    fn mlguard_rs(m: &Bound<'_, PyModule>) -> PyResult<()> {
        m.add("__version__", env!("CARGO_PKG_VERSION"))?;
        m.add_function(wrap_pyfunction!(pickle_facts, m)?)?;
        m.add_function(wrap_pyfunction!(pickle_facts_file, m)?)?;
        m.add_function(wrap_pyfunction!(zip_facts, m)?)?;
        m.add_function(wrap_pyfunction!(crc32, m)?)?;
        m.add_function(wrap_pyfunction!(sha256, m)?)?;
        m.add_function(wrap_pyfunction!(protobuf_walk, m)?)?;
        m.add_function(wrap_pyfunction!(sha256_file, m)?)?;
        m.add_function(wrap_pyfunction!(sha256_files, m)?)?;
        m.add_class::<SecretRules>()?;
        m.add_function(wrap_pyfunction!(safetensors_header, m)?)?;
        m.add_function(wrap_pyfunction!(gguf_header, m)?)?;
        Ok(())
    }

    // ---------------------------------- safetensors and GGUF headers (safetensors.rs, gguf.rs) ----

    /// An integer of the facts as a Python int (None for None); through i64 when it fits, the
    /// fast conversion.
    fn int_to_py(py: Python<'_>, v: Option<i128>) -> PyResult<Bound<'_, PyAny>> {
        let Some(v) = v else { return Ok(py.None().into_bound(py)) };
        match i64::try_from(v) {
            Ok(small) => Ok(small.into_pyobject(py)?.into_any()),
            Err(_) => Ok(v.into_pyobject(py)?.into_any()),
        }
    }

    /// A JSON value as Python's `json` module gives it.
    fn json_to_py<'py>(py: Python<'py>, value: &crate::safetensors::Json) -> PyResult<Bound<'py, PyAny>> {
        use crate::safetensors::Json;
        Ok(match value {
            Json::Null => py.None().into_bound(py),
            Json::Bool(b) => pyo3::types::PyBool::new(py, *b).to_owned().into_any(),
            Json::Int(i) => int_to_py(py, Some(*i))?,
            Json::Float(f) => pyo3::types::PyFloat::new(py, *f).into_any(),
            Json::Str(s) => PyString::new(py, s).into_any(),
            Json::Array(items) => {
                let list = PyList::empty(py);
                for item in items {
                    list.append(json_to_py(py, item)?)?;
                }
                list.into_any()
            }
            Json::Object(members) => json_object_to_py(py, members)?.into_any(),
        })
    }

    fn json_object_to_py<'py>(
        py: Python<'py>,
        members: &crate::safetensors::Object,
    ) -> PyResult<Bound<'py, PyDict>> {
        let out = PyDict::new(py);
        for (key, value) in members {
            out.set_item(key, json_to_py(py, value)?)?;
        }
        Ok(out)
    }

    fn safetensors_facts_to_py<'py>(
        py: Python<'py>,
        facts: &crate::safetensors::Facts,
    ) -> PyResult<Bound<'py, PyDict>> {
        let out = PyDict::new(py);
        out.set_item(intern!(py, "header_length"), facts.header_length)?;
        out.set_item(intern!(py, "error"), facts.error)?;
        out.set_item(intern!(py, "detail"), &facts.detail)?;
        out.set_item(intern!(py, "duplicates"), &facts.duplicates)?;
        match &facts.metadata {
            Some(members) => out.set_item(intern!(py, "metadata"), json_object_to_py(py, members)?)?,
            None => out.set_item(intern!(py, "metadata"), py.None())?,
        }
        let tensors = PyList::empty(py);
        for t in &facts.tensors {
            let d = PyDict::new(py);
            d.set_item(intern!(py, "name"), &t.name)?;
            d.set_item(intern!(py, "dtype"), &t.dtype)?;
            match &t.shape {
                Some(shape) => {
                    let dims = PyList::empty(py);
                    for dim in shape {
                        dims.append(int_to_py(py, Some(*dim))?)?;
                    }
                    d.set_item(intern!(py, "shape"), dims)?
                }
                None => d.set_item(intern!(py, "shape"), py.None())?,
            }
            d.set_item(intern!(py, "begin"), int_to_py(py, t.begin)?)?;
            d.set_item(intern!(py, "end"), int_to_py(py, t.end)?)?;
            d.set_item(intern!(py, "problem"), &t.problem)?;
            tensors.append(d)?;
        }
        out.set_item(intern!(py, "tensors"), tensors)?;
        Ok(out)
    }

    /// safetensors_header(data, file_size=None)
    ///
    /// Facts about the safetensors header at the start of a bytes-like object; see
    /// `mlguard.engine.safetensors_header`, the supported entry point. The GIL is released while
    /// parsing.
    #[pyfunction]
    #[pyo3(signature = (data, file_size=None))]
    fn safetensors_header<'py>(
        py: Python<'py>,
        data: &Bound<'py, PyAny>,
        file_size: Option<u64>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let input = Input::new(data)?;
        let slice: &[u8] = input.as_slice();
        let facts = py.detach(|| crate::safetensors::header_facts(slice, file_size));
        let out = safetensors_facts_to_py(py, &facts);
        drop(facts); // borrows the input's strings
        drop(input);
        out
    }

    fn gguf_value_to_py<'py>(py: Python<'py>, value: &crate::gguf::Value) -> PyResult<Bound<'py, PyAny>> {
        use crate::gguf::Value;
        Ok(match value {
            Value::UInt(u) => u.into_pyobject(py)?.into_any(),
            Value::Int(i) => i.into_pyobject(py)?.into_any(),
            Value::Float(f) => pyo3::types::PyFloat::new(py, *f).into_any(),
            Value::Bool(b) => pyo3::types::PyBool::new(py, *b).to_owned().into_any(),
            Value::Str(s) => PyString::new(py, s).into_any(),
            Value::Array(items) => {
                let list = PyList::empty(py);
                for item in items {
                    list.append(gguf_value_to_py(py, item)?)?;
                }
                list.into_any()
            }
        })
    }

    /// gguf_header(data)
    ///
    /// Facts about the GGUF header at the start of a bytes-like object; see
    /// `mlguard.engine.gguf_header`, the supported entry point. The GIL is released while parsing.
    #[pyfunction]
    fn gguf_header<'py>(py: Python<'py>, data: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyDict>> {
        let input = Input::new(data)?;
        let slice: &[u8] = input.as_slice();
        let facts = py.detach(|| crate::gguf::header_facts(slice));
        drop(input);
        let metadata = PyList::empty(py);
        for e in &facts.metadata {
            metadata.append((e.key.as_str(), e.kind, gguf_value_to_py(py, &e.value)?, e.at))?;
        }
        let tensors = PyList::empty(py);
        for t in &facts.tensors {
            let d = PyDict::new(py);
            d.set_item(intern!(py, "name"), &t.name)?;
            d.set_item(intern!(py, "dims"), &t.dims)?;
            d.set_item(intern!(py, "type"), t.kind)?;
            d.set_item(intern!(py, "offset"), t.offset)?;
            d.set_item(intern!(py, "at"), t.at)?;
            tensors.append(d)?;
        }
        let out = PyDict::new(py);
        out.set_item(intern!(py, "version"), facts.version)?;
        out.set_item(intern!(py, "metadata"), metadata)?;
        out.set_item(intern!(py, "tensors"), tensors)?;
        out.set_item(intern!(py, "data_start"), facts.data_start)?;
        out.set_item(intern!(py, "error"), &facts.error)?;
        out.set_item(intern!(py, "error_offset"), facts.error_offset)?;
        Ok(out)
    }
}
