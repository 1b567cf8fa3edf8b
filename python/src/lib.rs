//! headstart from Python: a thin shell over the library, as the command line is. Embedding and inference run
//! with the GIL released; arrays come back as numpy arrays that own the library's buffers (no copies per
//! element); errors are `headstart.HeadstartError` with the message the command line prints.

mod arrays;
mod audit;
mod bundle;
mod embedder;

use pyo3::prelude::*;

pyo3::create_exception!(
    _headstart,
    HeadstartError,
    pyo3::exceptions::PyException,
    "An error from headstart, with the message its command line prints."
);

/// The library's error as a Python exception.
fn raise(error: headstart::Error) -> PyErr {
    HeadstartError::new_err(error.to_string())
}

#[pymodule]
fn _headstart(module: &Bound<'_, PyModule>) -> PyResult<()> {
    module.add("HeadstartError", module.py().get_type::<HeadstartError>())?;
    module.add("__version__", env!("CARGO_PKG_VERSION"))?;
    module.add_class::<embedder::Embedder>()?;
    module.add_class::<embedder::Embedded>()?;
    module.add_class::<bundle::Bundle>()?;
    module.add_function(wrap_pyfunction!(bundle::train, module)?)?;
    module.add_function(wrap_pyfunction!(bundle::load, module)?)?;
    module.add_function(wrap_pyfunction!(audit::audit, module)?)?;
    Ok(())
}
