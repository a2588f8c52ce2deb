#pragma once
// Messages between the engine, run supervisors and step actors. Included only
// by the actors' own .cpp files (it pulls in CAF).
//
//   engine ──start──▶ run_supervisor ──spawn──▶ step_actor (one per step)
//   step_actor ──step_finished──▶ run_supervisor
//   engine ──revoke(terminate)──▶ run_supervisor
//   run_supervisor: on the last step, commits the run record and quits.
#include <cstdint>
#include <memory>

#include <caf/all.hpp>

#include "stepflow/runtime/step.hpp"

namespace stepflow::actors {

/// What a step actor reports back: the step's index, its outcome and logs.
struct step_finished {
  uint32_t index = 0;
  step_outcome outcome;
  std::vector<log_line> logs;
  int64_t started_ns = 0;
  int64_t ended_ns = 0;
};
using step_finished_ptr = std::shared_ptr<const step_finished>;
using step_outcome_ptr = std::shared_ptr<const step_outcome>;

using start_atom = caf::atom_constant<caf::atom("sf_start")>;
using finished_atom = caf::atom_constant<caf::atom("sf_fin")>;
using outcome_atom = caf::atom_constant<caf::atom("sf_out")>;
using revoke_atom = caf::atom_constant<caf::atom("sf_revoke")>;
using timeout_atom = caf::atom_constant<caf::atom("sf_tmo")>;
using go_atom = caf::atom_constant<caf::atom("sf_go")>;

} // namespace stepflow::actors

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(stepflow::actors::step_finished_ptr)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(stepflow::actors::step_outcome_ptr)

namespace stepflow::actors {

/// The run supervisor's typed interface.
using run_supervisor_actor = caf::typed_actor<
  caf::reacts_to<start_atom>,
  caf::reacts_to<finished_atom, step_finished_ptr>,
  caf::reacts_to<revoke_atom, bool>>;

/// A step actor's interface (it receives its own completion and timeout).
using step_actor = caf::typed_actor<
  caf::reacts_to<go_atom>,
  caf::reacts_to<outcome_atom, step_outcome_ptr>,
  caf::reacts_to<timeout_atom>>;

} // namespace stepflow::actors

#include "stepflow/actors/engine.hpp"
#include "stepflow/runtime/run_record.hpp"

namespace stepflow::actors {

/// Everything a run supervisor starts from.
struct run_init {
  run_plan plan;
  run_record rec;
  run_observer obs;
  step_services services;
  /// Called once after the run's final record was committed.
  std::function<void(const std::string& task_id)> on_exit;
};

/// Spawns the supervisor of one run; it starts on start_atom.
run_supervisor_actor spawn_run_supervisor(caf::actor_system& sys, std::shared_ptr<run_init> init);

} // namespace stepflow::actors
