//! numpy arrays in and out. The numpy crate may be built on another ndarray than headstart's, so arrays
//! cross as contiguous slices with their shape: numpy's buffer is viewed in place, and a result's buffer is
//! handed to numpy as it is. Nothing is copied element by element through Python.

use ndarray::{Array2, ArrayView2, ArrayView4};
use numpy::{
    Element, PyArray1, PyArray2, PyArrayMethods, PyReadonlyArrayDyn, PyUntypedArrayMethods,
};
use pyo3::prelude::*;

use crate::HeadstartError;

/// `object` as a C-contiguous numpy array of `dtype` (numpy converts only what is not one already).
pub fn contiguous<'py, T: Element>(
    object: &Bound<'py, PyAny>,
    dtype: &str,
) -> PyResult<PyReadonlyArrayDyn<'py, T>> {
    let array = object
        .py()
        .import("numpy")?
        .call_method1("ascontiguousarray", (object, dtype))?;
    array.extract::<PyReadonlyArrayDyn<'py, T>>()
}

fn values<'a, T: Element>(array: &'a PyReadonlyArrayDyn<'_, T>) -> PyResult<&'a [T]> {
    array
        .as_slice()
        .map_err(|e| HeadstartError::new_err(e.to_string()))
}

/// A 2-D array as an [N, D] view; `what` names it in the error for another shape.
pub fn matrix<'a, T: Element>(
    array: &'a PyReadonlyArrayDyn<'_, T>,
    what: &str,
) -> PyResult<ArrayView2<'a, T>> {
    let &[rows, columns] = array.shape() else {
        return Err(HeadstartError::new_err(format!(
            "{what} must be a 2-dimensional array [N, D], got shape {:?}",
            array.shape()
        )));
    };
    ArrayView2::from_shape((rows, columns), values(array)?)
        .map_err(|e| HeadstartError::new_err(e.to_string()))
}

/// A 4-D array as an [N, H, W, C] view.
pub fn images<'a>(array: &'a PyReadonlyArrayDyn<'_, u8>) -> PyResult<ArrayView4<'a, u8>> {
    let &[n, height, width, channels] = array.shape() else {
        return Err(HeadstartError::new_err(format!(
            "pixels must be RGB images shaped [N, H, W, 3], got shape {:?}",
            array.shape()
        )));
    };
    ArrayView4::from_shape((n, height, width, channels), values(array)?)
        .map_err(|e| HeadstartError::new_err(e.to_string()))
}

/// `object` as uint8 pixels: other dtypes are refused rather than silently cast.
pub fn pixels<'py>(object: &Bound<'py, PyAny>) -> PyResult<PyReadonlyArrayDyn<'py, u8>> {
    let dtype = object.getattr("dtype")?.str()?.to_string();
    if dtype != "uint8" {
        return Err(HeadstartError::new_err(format!(
            "pixels must be uint8 RGB values (0-255), got a {dtype} array"
        )));
    }
    contiguous(object, "uint8")
}

/// An [N, D] matrix as a numpy array that takes over its buffer.
pub fn to_numpy<'py>(py: Python<'py>, matrix: Array2<f32>) -> PyResult<Bound<'py, PyArray2<f32>>> {
    let (rows, columns) = matrix.dim();
    let standard = if matrix.is_standard_layout() {
        matrix
    } else {
        matrix.as_standard_layout().into_owned()
    };
    // A standard-layout array is one run of values, from its offset into the buffer.
    let (mut buffer, offset) = standard.into_raw_vec_and_offset();
    let start = offset.unwrap_or(0);
    if start != 0 || buffer.len() != rows * columns {
        buffer = buffer[start..start + rows * columns].to_vec();
    }
    PyArray1::from_vec(py, buffer).reshape([rows, columns])
}
