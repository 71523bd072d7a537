//! Running a change of an instance as an Incus operation: the request answers 202 at once, and
//! the operation (with its events) reports how the change ended.

use crate::context::Context;
use crate::envelope::{self, ApiResponse};
use crate::error::{ApiError, with_causes};
use crate::operations::OperationClass;
use crate::urls::instance_url;

/// Starts `work` as a task operation on instance `name` of `project`, described as Incus
/// describes it (`Starting instance`), and answers 202 with the operation.
pub fn run(
    context: &Context,
    description: &str,
    project: &str,
    name: &str,
    work: impl Future<Output = Result<(), ApiError>> + Send + 'static,
) -> ApiResponse {
    let resources = [("instances".to_owned(), vec![instance_url(name)])]
        .into_iter()
        .collect();
    let operation = context.operations.start(
        description,
        OperationClass::Task,
        resources,
        project,
        async move {
            work.await
                .map(|()| None)
                .map_err(|error| with_causes(&error))
        },
    );
    envelope::accepted(operation.url(), operation)
}
