//! Where ONNX Runtime put the nodes of a CUDA session. It silently runs nodes it has no CUDA kernel for on the
//! CPU (and deliberately keeps small shape arithmetic there); its verbose session log lists every placement,
//! so that log is captured while the session is built and read here.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use ort::logging::{LogLevel, LoggerFunction};
use serde::Serialize;

/// Op types ONNX Runtime moves to the CPU on purpose when they only compute shapes or indices: cheap there, and
/// moving them back and forth would cost more. Anything else on the CPU in a CUDA session lacks a CUDA kernel.
const SHAPE_OPS: &[&str] = &[
    "Shape",
    "Size",
    "Gather",
    "Unsqueeze",
    "Squeeze",
    "Concat",
    "Slice",
    "Cast",
    "Range",
    "ConstantOfShape",
    "Reshape",
    "Expand",
    "Equal",
    "Where",
    "Add",
    "Sub",
    "Mul",
    "Div",
    "Floor",
    "Ceil",
    "Min",
    "Max",
    "Not",
    "And",
    "Or",
    "Less",
    "Greater",
    "Identity",
    "Constant",
    "NonZero",
    "ReduceProd",
    "MemcpyToHost",
    "MemcpyFromHost",
];

/// How many nodes each execution provider got, and which ops ran on the CPU.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Placement {
    /// (execution provider, nodes) as ONNX Runtime reported them.
    pub providers: Vec<(String, usize)>,
    /// Ops on the CPU that ONNX Runtime has no CUDA kernel for: (op type, nodes).
    pub without_gpu_kernel: Vec<(String, usize)>,
    /// Nodes of shape arithmetic ONNX Runtime keeps on the CPU on purpose.
    pub shape_nodes_on_cpu: usize,
}

impl Placement {
    /// Reads ONNX Runtime's "Node(s) placed on [EP]. Number of nodes: N" blocks (each followed by one
    /// "  OpType (name)" line per node) and its one-line "All nodes placed on [EP]" form.
    pub(crate) fn from_log(lines: &[String]) -> Option<Placement> {
        let mut placement = Placement::default();
        let mut current: Option<String> = None;
        let mut seen = false;
        for line in lines {
            if let Some((provider, count)) = placement_header(line) {
                seen = true;
                placement.providers.push((provider.clone(), count));
                current = Some(provider);
                continue;
            }
            let Some(provider) = current.as_deref() else {
                continue;
            };
            let Some(op) = node_line(line) else {
                current = None;
                continue;
            };
            if provider == "CPUExecutionProvider" {
                if SHAPE_OPS.contains(&op) {
                    placement.shape_nodes_on_cpu += 1;
                } else {
                    match placement
                        .without_gpu_kernel
                        .iter_mut()
                        .find(|(o, _)| o == op)
                    {
                        Some((_, n)) => *n += 1,
                        None => placement.without_gpu_kernel.push((op.to_string(), 1)),
                    }
                }
            }
        }
        seen.then_some(placement)
    }

    /// "36 of 402 nodes (DynamicQuantizeLinear ×12, MatMulInteger ×24)", or `None` when every node that
    /// matters runs on the GPU.
    pub(crate) fn cpu_fallback(&self) -> Option<String> {
        if self.without_gpu_kernel.is_empty() {
            return None;
        }
        let total: usize = self.providers.iter().map(|(_, n)| n).sum();
        let on_cpu: usize = self.without_gpu_kernel.iter().map(|(_, n)| n).sum();
        let ops: Vec<String> = self
            .without_gpu_kernel
            .iter()
            .map(|(op, n)| format!("{op} ×{n}"))
            .collect();
        Some(format!("{on_cpu} of {total} nodes ({})", ops.join(", ")))
    }
}

impl std::fmt::Display for Placement {
    /// "nodes: 340 on CUDAExecutionProvider, 62 on CPUExecutionProvider (26 shape ops; no CUDA kernel: …)"
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let providers: Vec<String> = self
            .providers
            .iter()
            .map(|(provider, n)| format!("{n} on {provider}"))
            .collect();
        write!(f, "nodes: {}", providers.join(", "))?;
        if self.shape_nodes_on_cpu > 0 || !self.without_gpu_kernel.is_empty() {
            let kernels: Vec<String> = self
                .without_gpu_kernel
                .iter()
                .map(|(op, n)| format!("{op} ×{n}"))
                .collect();
            write!(f, " ({} shape ops", self.shape_nodes_on_cpu)?;
            if !kernels.is_empty() {
                write!(f, "; no CUDA kernel: {}", kernels.join(", "))?;
            }
            f.write_str(")")?;
        }
        Ok(())
    }
}

fn placement_header(line: &str) -> Option<(String, usize)> {
    let rest = line
        .split_once("Node(s) placed on [")
        .or_else(|| line.split_once("All nodes placed on ["))?
        .1;
    let (provider, rest) = rest.split_once(']')?;
    let count = rest.rsplit(':').next()?.trim().parse().ok()?;
    Some((provider.to_string(), count))
}

/// "  MatMulInteger (/encoder/layer.0/MatMul_quant)" → "MatMulInteger".
fn node_line(line: &str) -> Option<&str> {
    let trimmed = line.trim_start();
    if trimmed.len() == line.len() {
        return None;
    }
    let (op, rest) = trimmed.split_once(' ')?;
    (rest.starts_with('(')
        && !op.is_empty()
        && op.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
    .then_some(op)
}

/// Collects a session's log while it is built; afterwards passes warnings on to stderr as ONNX Runtime would.
#[derive(Clone)]
pub(crate) struct SessionLog {
    lines: Arc<Mutex<Vec<String>>>,
    capturing: Arc<AtomicBool>,
}

impl SessionLog {
    pub fn new() -> Self {
        SessionLog {
            lines: Arc::new(Mutex::new(Vec::new())),
            capturing: Arc::new(AtomicBool::new(true)),
        }
    }

    pub(crate) fn logger(&self) -> LoggerFunction {
        let log = self.clone();
        Arc::new(move |level, _category, _id, _location, message| {
            if log.capturing.load(Ordering::Relaxed) {
                log.lines
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner())
                    .push(message.to_string());
            } else if level == LogLevel::Warning {
                eprintln!("onnxruntime: {message}");
            }
        })
    }

    /// Stops capturing and reads the placement from what was logged.
    pub fn finish(&self) -> Option<Placement> {
        self.capturing.store(false, Ordering::Relaxed);
        let lines = std::mem::take(
            &mut *self
                .lines
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner()),
        );
        Placement::from_log(&lines)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(text: &str) -> Vec<String> {
        text.lines().map(str::to_string).collect()
    }

    #[test]
    fn reads_both_forms_of_the_placement_log() {
        let log = lines(
            "Removing initializer 'x'\n \
             Node(s) placed on [CUDAExecutionProvider]. Number of nodes: 340\n  \
             Conv (conv1)\n  \
             MatMul (m)\n \
             Node(s) placed on [CPUExecutionProvider]. Number of nodes: 5\n  \
             Gather (/embeddings/Gather)\n  \
             Shape (s)\n  \
             DynamicQuantizeLinear (q0)\n  \
             MatMulInteger (mi0)\n  \
             MatMulInteger (mi1)\n\
             Some nodes were not assigned to the preferred execution providers",
        );
        let placement = Placement::from_log(&log).unwrap();
        assert_eq!(
            placement.providers,
            vec![
                ("CUDAExecutionProvider".to_string(), 340),
                ("CPUExecutionProvider".to_string(), 5)
            ]
        );
        assert_eq!(placement.shape_nodes_on_cpu, 2);
        assert_eq!(
            placement.without_gpu_kernel,
            vec![
                ("DynamicQuantizeLinear".to_string(), 1),
                ("MatMulInteger".to_string(), 2)
            ]
        );
        assert_eq!(
            placement.cpu_fallback().unwrap(),
            "3 of 345 nodes (DynamicQuantizeLinear ×1, MatMulInteger ×2)"
        );

        let all = Placement::from_log(&lines(
            " All nodes placed on [CUDAExecutionProvider]. Number of nodes: 64",
        ))
        .unwrap();
        assert_eq!(
            all.providers,
            vec![("CUDAExecutionProvider".to_string(), 64)]
        );
        assert_eq!(all.cpu_fallback(), None);
        assert_eq!(Placement::from_log(&lines("nothing about placement")), None);
    }
}
