//! Batches filled in place by many threads. A worker reserves the next row of the batch being filled, writes its
//! preprocessed image straight into that row of the (page-locked, on CUDA) buffer, and the batch goes to the model
//! once every row is written: no image passes through another thread's copy. A fixed set of buffers recycles.

use std::sync::mpsc::SyncSender;
use std::sync::{Condvar, Mutex, MutexGuard};

use super::cache::Key;
use crate::backbone::BatchBuffer;

/// Which view of which file a row holds, and its cache key.
pub(crate) type Row = (usize, usize, Option<Key>);

/// A batch on its way to the model: the buffer and, per row, what it holds.
pub(crate) struct Batch {
    pub buffer: BatchBuffer,
    pub rows: Vec<Row>,
}

/// A reserved row: where to write one preprocessed image.
pub(crate) struct Slot {
    batch: u64,
    row: usize,
    start: *mut f32,
    len: usize,
}

// SAFETY: a slot is the only handle to its row until `Assembly::written` takes it back; the buffer it points into
// stays in the assembly, unmoved in memory, until every reserved row of it is written.
unsafe impl Send for Slot {}

impl Slot {
    /// The row to write.
    pub fn values(&mut self) -> &mut [f32] {
        // SAFETY: see `unsafe impl Send`: rows are disjoint and each is reserved by one slot only.
        unsafe { std::slice::from_raw_parts_mut(self.start, self.len) }
    }
}

struct Filling {
    id: u64,
    buffer: BatchBuffer,
    rows: Vec<Option<Row>>,
    reserved: usize,
    written: usize,
}

struct State {
    /// Batches with rows reserved; the last one takes new reservations.
    open: Vec<Filling>,
    free: Vec<BatchBuffer>,
    next_id: u64,
    closed: bool,
}

pub(crate) struct Assembly {
    state: Mutex<State>,
    freed: Condvar,
    to_model: Mutex<Option<SyncSender<Batch>>>,
}

impl Assembly {
    pub fn new(buffers: Vec<BatchBuffer>, to_model: SyncSender<Batch>) -> Self {
        Assembly {
            state: Mutex::new(State {
                open: Vec::new(),
                free: buffers,
                next_id: 0,
                closed: false,
            }),
            freed: Condvar::new(),
            to_model: Mutex::new(Some(to_model)),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The next row to write, waiting for a buffer to come back when all are in use; `None` once closed.
    pub(crate) fn reserve(&self) -> Option<Slot> {
        let mut state = self.lock();
        loop {
            if state.closed {
                return None;
            }
            let has_room = state
                .open
                .last()
                .is_some_and(|f| f.reserved < f.buffer.rows());
            if has_room {
                break;
            }
            if let Some(buffer) = state.free.pop() {
                let id = state.next_id;
                state.next_id += 1;
                let rows = buffer.rows();
                state.open.push(Filling {
                    id,
                    buffer,
                    rows: vec![None; rows],
                    reserved: 0,
                    written: 0,
                });
                break;
            }
            state = self
                .freed
                .wait(state)
                .unwrap_or_else(|poisoned| poisoned.into_inner());
        }
        let filling = state.open.last_mut()?;
        let row = filling.reserved;
        filling.reserved += 1;
        let (start, len) = filling.buffer.row_ptr(row);
        Some(Slot {
            batch: filling.id,
            row,
            start,
            len,
        })
    }

    /// Takes back a written slot; a batch whose rows are all written goes to the model. `false` when the model
    /// is gone (it failed).
    pub fn written(&self, slot: Slot, row: Row) -> bool {
        let complete = {
            let mut state = self.lock();
            let Some(index) = state.open.iter().position(|f| f.id == slot.batch) else {
                return false;
            };
            let filling = &mut state.open[index];
            filling.rows[slot.row] = Some(row);
            filling.written += 1;
            let full = filling.reserved == filling.buffer.rows();
            (full && filling.written == filling.reserved).then(|| state.open.remove(index))
        };
        match complete {
            Some(filling) => self.send(filling),
            None => true,
        }
    }

    /// Sends what is written (once no writer is left) and lets the model's queue close.
    pub fn finish(&self) {
        let partial: Vec<Filling> = std::mem::take(&mut self.lock().open);
        for filling in partial.into_iter().filter(|f| f.written > 0) {
            self.send(filling);
        }
        self.to_model
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take();
    }

    /// A buffer the model is done with.
    pub(crate) fn recycle(&self, buffer: BatchBuffer) {
        self.lock().free.push(buffer);
        self.freed.notify_all();
    }

    /// Stops every reservation (after an error): waiting workers return.
    pub fn close(&self) {
        self.lock().closed = true;
        self.freed.notify_all();
    }

    fn send(&self, filling: Filling) -> bool {
        let rows = filling.rows.into_iter().flatten().collect();
        let batch = Batch {
            buffer: filling.buffer,
            rows,
        };
        // Cloned out of the lock: the send may wait for the model, and others must be able to finish meanwhile.
        let sender = self
            .to_model
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone();
        sender.is_some_and(|s| s.send(batch).is_ok())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::mpsc::sync_channel;

    use super::*;

    #[test]
    fn rows_written_by_many_threads_arrive_whole_in_full_batches() {
        let (to_model, queue) = sync_channel(1);
        let buffers = (0..3).map(|_| BatchBuffer::on_host(4, 3)).collect();
        let assembly = Assembly::new(buffers, to_model);
        let (next, active) = (AtomicUsize::new(0), AtomicUsize::new(4));
        let mut seen = Vec::new();
        let mut sizes = Vec::new();
        std::thread::scope(|scope| {
            for _ in 0..4 {
                scope.spawn(|| {
                    loop {
                        let item = next.fetch_add(1, Ordering::Relaxed);
                        if item >= 10 {
                            break;
                        }
                        let mut slot = assembly.reserve().unwrap();
                        slot.values().fill(item as f32);
                        assert!(assembly.written(slot, (item, 0, None)));
                    }
                    if active.fetch_sub(1, Ordering::AcqRel) == 1 {
                        assembly.finish();
                    }
                });
            }
            for batch in queue.iter() {
                sizes.push(batch.rows.len());
                for (row, (item, view, _)) in batch.rows.iter().enumerate() {
                    assert_eq!(*view, 0);
                    assert_eq!(
                        &batch.buffer.values()[row * 3..row * 3 + 3],
                        [*item as f32; 3]
                    );
                    seen.push(*item);
                }
                assembly.recycle(batch.buffer);
            }
        });
        seen.sort();
        assert_eq!(seen, (0..10).collect::<Vec<_>>());
        sizes.sort();
        assert_eq!(sizes, [2, 4, 4]);
    }

    #[test]
    fn closing_wakes_a_worker_waiting_for_a_buffer() {
        let (to_model, _queue) = sync_channel(1);
        let assembly = Assembly::new(vec![BatchBuffer::on_host(1, 2)], to_model);
        let _held = assembly.reserve().unwrap();
        std::thread::scope(|scope| {
            let waiting = scope.spawn(|| assembly.reserve().is_none());
            std::thread::sleep(std::time::Duration::from_millis(50));
            assembly.close();
            assert!(waiting.join().unwrap());
        });
    }
}
