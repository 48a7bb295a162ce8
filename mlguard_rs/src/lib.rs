//! Python bindings for the ML Guard kernels. Glue only: parsing lives in sibling modules.
use pyo3::prelude::*;

#[pymodule]
fn mlguard_rs(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
