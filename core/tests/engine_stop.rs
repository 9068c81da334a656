//! `stop()` leaves no task and no descriptor behind. Alone in its file: it counts the process's
//! descriptors, which other tests running in parallel would disturb.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)] // test code: a panic is a failure report

mod common;

use common::pair;
use peerlink_core::packet::{icmp_echo_request, parse_echo};

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map(|d| d.count()).unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_leaves_no_task_or_socket_behind() {
    let metrics = tokio::runtime::Handle::current().metrics();
    let fds_before = open_fds();
    let tasks_before = metrics.num_alive_tasks();
    for round in 0..20u16 {
        let (a, b) = pair(true);
        a.os.send(&icmp_echo_request(a.v4, b.v4, 1, round, 8).unwrap())
            .await
            .unwrap();
        b.recv_matching(|p| parse_echo(p).is_some()).await;
        let (a_os, b_os) = (a.os, b.os);
        a.engine.stop().await;
        b.engine.stop().await;
        drop((a_os, b_os));
    }
    // A joined task's memory is released by the worker that ran it, a moment after the join.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    while metrics.num_alive_tasks() > tasks_before && std::time::Instant::now() < deadline {
        tokio::task::yield_now().await;
    }
    assert_eq!(metrics.num_alive_tasks(), tasks_before, "tasks left running");
    assert_eq!(open_fds(), fds_before, "descriptors left open");
}
