//! `result_poll`: the ACKs of the reports a poll id stands for once none is unacknowledged
//! (with the policy and trust codes they brought, again), or the authorization codes of a
//! request once CSSM issued them.

use outpost_core::device::{MessageCode, Status};
use outpost_db::reports::{self, DevicePoll};
use outpost_db::{AckId, AsyncPgConnection, DevicePollId, ProductInstanceId, acks, pi_files};
use serde_json::json;

use super::{Reply, authorization, waiting};
use crate::error::{AppError, AppResult, Code};

/// Answers a poll with what is ready for the poll id.
pub(super) async fn result_poll(
    conn: &mut AsyncPgConnection,
    pi: ProductInstanceId,
    poll_id: Option<&str>,
) -> AppResult<Reply> {
    let Some(poll_text) = poll_id else {
        return Err(AppError::malformed(
            "data.poll_id is required for result_poll",
        ));
    };
    let unknown = || {
        AppError::refused(
            Code::UnknownPollId,
            format!("unknown poll_id '{poll_text}' for this device"),
        )
    };
    let poll = poll_text.parse::<DevicePollId>().map_err(|_| unknown())?;
    let report_ids = match reports::device_poll(conn, pi, poll).await? {
        None => return Err(unknown()),
        Some(DevicePoll::Authorization(request)) => {
            return authorization::poll(conn, request, poll_text).await;
        }
        Some(DevicePoll::Reports(ids)) => ids,
    };
    let waiting = reports::count_unacknowledged(conn, pi, &report_ids).await?;
    let files = acks::acks_for_reports(conn, pi, &report_ids).await?;
    let detail = json!({ "poll_id": poll_text, "waiting": waiting });
    let mut reply = if waiting == 0 {
        Reply::new(
            Status::Ok,
            MessageCode::PollComplete,
            "acknowledgement ready",
            None,
            detail,
        )
    } else {
        let message = format!(
            "{waiting} of {} reports await CSSM's acknowledgement",
            report_ids.len()
        );
        Reply::new(
            Status::OkPoll,
            MessageCode::PollPending,
            message,
            Some(poll_text.to_owned()),
            detail,
        )
    };
    // The policy and trust codes those ACKs brought go again too.
    let ack_ids: Vec<AckId> = files.iter().map(|(id, _)| *id).collect();
    waiting::add_pi_files(
        &mut reply.response,
        pi_files::for_acks(conn, pi, &ack_ids).await?,
    );
    reply.acks = files;
    Ok(reply)
}
