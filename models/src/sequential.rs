//! A shuttle scheduler that runs one thread at a time: shuttle's counterpart of a loom run
//! at preemption bound 0.
//!
//! The running thread keeps the processor for as long as it is runnable and does not yield;
//! only when it blocks (a lock, a join), yields or ends does the inner scheduler pick the next
//! thread among the runnable ones. So no thread is ever preempted, and a bug this scheduler
//! finds needs no race: some order of whole thread runs (between blocking points) shows it.
#![cfg(shuttle)]

use shuttle::scheduler::{Schedule, Scheduler, Task, TaskId};

/// Wraps `S`, consulting it only where a thread stops of its own accord.
#[derive(Debug)]
pub struct OneAtATime<S> {
    inner: S,
}

impl<S> OneAtATime<S> {
    pub fn new(inner: S) -> Self {
        OneAtATime { inner }
    }
}

impl<S: Scheduler> Scheduler for OneAtATime<S> {
    fn new_execution(&mut self) -> Option<Schedule> {
        self.inner.new_execution()
    }

    fn next_task(
        &mut self,
        runnable: &[&Task],
        current: Option<TaskId>,
        is_yielding: bool,
    ) -> Option<TaskId> {
        match current {
            Some(id) if !is_yielding && runnable.iter().any(|t| t.id() == id) => Some(id),
            _ => self.inner.next_task(runnable, current, is_yielding),
        }
    }

    fn next_u64(&mut self) -> u64 {
        self.inner.next_u64()
    }
}
