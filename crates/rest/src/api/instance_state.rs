//! `/1.0/instances/{name}/state`: read the run-time state, and start, stop, restart, freeze or
//! unfreeze.

use std::time::Duration;

use hyper::body::Incoming;
use vgashot_instance_drivers::{DriverError, Instance as DriverInstance, InstanceStatus};

use crate::api::lifecycle;
use crate::context::Context;
use crate::envelope::{self, ApiResponse};
use crate::error::ApiError;
use crate::model::{
    InstanceState, InstanceStateCpu, InstanceStateMemory, InstanceStatePut, ZERO_TIME,
};
use crate::request::{ProjectQuery, Query, json_body};
use crate::urls::instance_url;

/// How long a clean shutdown may take when the client says "forever" (`timeout: -1`, what
/// `incus stop` sends): a guest that ignores the ACPI button is then stopped by force rather
/// than left hanging the request for ever.
pub const FOREVER_STOP_TIMEOUT: Duration = Duration::from_secs(60);
/// The longest clean shutdown a client can ask for (`timeout` in seconds); a longer one is cut
/// to this. Five minutes is more than a real distribution needs to shut down (systemd's default
/// stop timeout is 90 s a unit; Incus's `boot.host_shutdown_timeout` defaults to 30 s), yet keeps
/// a guest that ignores the ACPI button from holding the instance (its `PUT` and `PATCH` wait)
/// for hours. A forced stop never waits for it: it cuts a clean shutdown short at once.
pub const MAX_STOP_TIMEOUT: Duration = Duration::from_secs(300);

/// The wire form of an instance's state.
pub fn state(vm: &dyn DriverInstance) -> InstanceState {
    let state = vm.state();
    let usage = vm.usage();
    InstanceState {
        status: state.status.as_str().into(),
        status_code: i32::from(state.status.code()),
        disk: None,
        memory: InstanceStateMemory {
            usage: usage.map_or(0, |usage| saturating_i64(usage.memory_bytes)),
            ..Default::default()
        },
        // No guest agent: the guest's interfaces are unknown.
        network: None,
        pid: state.pid.map_or(0, i64::from),
        // Incus's value for a VM whose guest agent does not answer.
        processes: if state.pid.is_some() { -1 } else { 0 },
        cpu: InstanceStateCpu {
            usage: usage.map_or(0, |usage| saturating_i64(usage.cpu_nanoseconds)),
            allocated_time: 0,
        },
        started_at: usage.map_or_else(
            || ZERO_TIME.to_owned(),
            |usage| vgashot_stdext::rfc3339(usage.started_at),
        ),
        os_info: None,
    }
}

fn saturating_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// Get an instance's state
#[utoipa::path(
    get,
    path = "/1.0/instances/{name}/state",
    operation_id = "instance_state_get",
    tag = "instances",
    params(("name" = String, Path, description = "Instance name"), ProjectQuery),
    responses(
        (status = 200, description = "The state", body = crate::envelope::SyncEnvelope<InstanceState>),
        (status = 404, description = "No such instance or project", body = crate::envelope::ErrorEnvelope),
    ),
)]
pub async fn get(context: &Context, name: &str, query: &Query) -> Result<ApiResponse, ApiError> {
    let vm = context.instance(query.typed::<ProjectQuery>()?.project.name()?, name)?;
    Ok(envelope::sync(state(vm.as_ref())))
}

/// A state change, checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Start,
    Stop { force: bool, timeout: Duration },
    Restart { force: bool, timeout: Duration },
    Freeze,
    Unfreeze,
}

impl Action {
    fn parse(request: &InstanceStatePut) -> Result<Self, ApiError> {
        if request.stateful {
            return Err(ApiError::BadRequest(
                "Stateful start and stop are not supported".into(),
            ));
        }
        let timeout = match request.timeout {
            -1 => FOREVER_STOP_TIMEOUT,
            seconds @ 0.. => Duration::from_secs(seconds.unsigned_abs()).min(MAX_STOP_TIMEOUT),
            other => {
                return Err(ApiError::BadRequest(format!(
                    "Invalid timeout {other}: -1 (as long as it takes, here one minute) or 0 \
                     seconds and more"
                )));
            }
        };
        let force = request.force;
        Ok(match request.action.as_str() {
            "start" => Self::Start,
            "stop" => Self::Stop { force, timeout },
            "restart" => Self::Restart { force, timeout },
            "freeze" => Self::Freeze,
            "unfreeze" => Self::Unfreeze,
            other => {
                return Err(ApiError::BadRequest(format!("Unknown action {other}")));
            }
        })
    }

    /// Refuses at once what the instance's status makes impossible, with Incus's words.
    fn check(self, status: InstanceStatus) -> Result<(), DriverError> {
        let running = matches!(status, InstanceStatus::Running | InstanceStatus::Frozen);
        match self {
            Self::Start if running => Err(DriverError::AlreadyRunning),
            Self::Stop { .. } if status == InstanceStatus::Stopped => {
                Err(DriverError::AlreadyStopped)
            }
            Self::Restart { .. } | Self::Freeze if !running => Err(DriverError::NotRunning),
            Self::Unfreeze if status != InstanceStatus::Frozen => Err(DriverError::NotFrozen),
            _ => Ok(()),
        }
    }

    /// Incus's operation description and the life-cycle event of success, if the handler
    /// publishes one: starts and stops (a restart's too) are the driver's transitions, which
    /// [`crate::transitions`] publishes whatever caused them.
    fn describe(self) -> (&'static str, Option<&'static str>) {
        match self {
            Self::Start => ("Starting instance", None),
            Self::Stop { .. } => ("Stopping instance", None),
            Self::Restart { .. } => ("Restarting instance", Some("instance-restarted")),
            Self::Freeze => ("Freezing instance", Some("instance-paused")),
            Self::Unfreeze => ("Unfreezing instance", Some("instance-resumed")),
        }
    }
}

/// Change an instance's state
///
/// `action` is `start`, `stop`, `restart`, `freeze` or `unfreeze`. A stop without `force` asks
/// the guest to shut down (ACPI) and stops it by force after `timeout` seconds (`-1`: one
/// minute, not for ever). Stateful actions are refused.
#[utoipa::path(
    put,
    path = "/1.0/instances/{name}/state",
    operation_id = "instance_state_put",
    tag = "instances",
    params(("name" = String, Path, description = "Instance name"), ProjectQuery),
    request_body = InstanceStatePut,
    responses(
        (status = 202, description = "Changing state", body = crate::envelope::AsyncEnvelope<crate::operations::Operation>),
        (status = 400, description = "An action the instance's state does not allow", body = crate::envelope::ErrorEnvelope),
        (status = 404, description = "No such instance or project", body = crate::envelope::ErrorEnvelope),
    ),
)]
pub async fn put(
    context: &Context,
    name: &str,
    query: &Query,
    body: Incoming,
) -> Result<ApiResponse, ApiError> {
    let project = query.typed::<ProjectQuery>()?.project.name()?.to_owned();
    let vm = context.instance(&project, name)?;
    let request: InstanceStatePut = json_body(body).await?;
    let action = Action::parse(&request)?;
    action.check(vm.state().status)?;
    let (description, event) = action.describe();
    let events = context.events.clone();
    let (url, event_project) = (instance_url(name), project.clone());
    Ok(lifecycle::run(
        context,
        description,
        &project,
        name,
        async move {
            match action {
                Action::Start => vm.start().await?,
                Action::Stop { force, timeout } => vm.stop(force, timeout).await?,
                Action::Restart { force, timeout } => vm.restart(force, timeout).await?,
                Action::Freeze => vm.freeze().await?,
                Action::Unfreeze => vm.unfreeze().await?,
            }
            if let Some(event) = event {
                events.publish_lifecycle(event, &url, &event_project);
            }
            Ok(())
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(action: &str, timeout: i64, force: bool) -> InstanceStatePut {
        InstanceStatePut {
            action: action.into(),
            timeout,
            force,
            stateful: false,
        }
    }

    #[test]
    fn actions_and_their_checks() {
        assert_eq!(
            Action::parse(&request("start", 0, false)).unwrap(),
            Action::Start
        );
        assert_eq!(
            Action::parse(&request("stop", -1, true)).unwrap(),
            Action::Stop {
                force: true,
                timeout: FOREVER_STOP_TIMEOUT
            }
        );
        assert_eq!(
            Action::parse(&request("stop", 100_000, false)).unwrap(),
            Action::Stop {
                force: false,
                timeout: MAX_STOP_TIMEOUT
            }
        );
        assert_eq!(
            Action::parse(&request("restart", 30, false)).unwrap(),
            Action::Restart {
                force: false,
                timeout: Duration::from_secs(30)
            }
        );
        assert!(Action::parse(&request("explode", 0, false)).is_err());
        // -1 is Incus's "forever", which waits one minute here; other negatives mean nothing.
        assert_eq!(
            Action::parse(&request("stop", -1, false)).unwrap(),
            Action::Stop {
                force: false,
                timeout: FOREVER_STOP_TIMEOUT
            }
        );
        assert_eq!(
            Action::parse(&request("stop", -2, false))
                .unwrap_err()
                .to_string(),
            "Invalid timeout -2: -1 (as long as it takes, here one minute) or 0 seconds and more"
        );
        let mut stateful = request("stop", 0, false);
        stateful.stateful = true;
        assert!(Action::parse(&stateful).is_err());

        assert!(matches!(
            Action::Start.check(InstanceStatus::Running),
            Err(DriverError::AlreadyRunning)
        ));
        let stop = Action::Stop {
            force: false,
            timeout: Duration::ZERO,
        };
        assert!(matches!(
            stop.check(InstanceStatus::Stopped),
            Err(DriverError::AlreadyStopped)
        ));
        assert!(stop.check(InstanceStatus::Error).is_ok());
        assert!(matches!(
            Action::Unfreeze.check(InstanceStatus::Running),
            Err(DriverError::NotFrozen)
        ));
        assert!(Action::Freeze.check(InstanceStatus::Running).is_ok());
    }
}
