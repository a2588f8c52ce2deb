#include "stepflow/actors/server.hpp"

#include <atomic>
#include <chrono>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <thread>
#include <unistd.h>

#include <fmt/format.h>

#include "stepflow/actors/engine.hpp"
#include "stepflow/actors/rest_api.hpp"
#include "stepflow/actors/task_service.hpp"
#include "stepflow/runtime/cache.hpp"
#include "stepflow/runtime/clock.hpp"
#include "stepflow/runtime/content.hpp"
#include "stepflow/runtime/http_client.hpp"
#include "stepflow/runtime/http_server.hpp"
#include "stepflow/runtime/kv_store.hpp"
#include "stepflow/runtime/launcher.hpp"
#include "stepflow/runtime/secrets.hpp"

namespace fs = std::filesystem;

namespace stepflow::actors {

// Defined in cli.cpp.
std::string default_data_dir();
caf::error load_bundled_syncpacks(std::vector<syncpack_content>& out,
                                  const std::vector<std::string>& extra,
                                  const std::string& data_dir, const cli_environment& env);

namespace {

std::atomic<int> g_stop{0};

extern "C" void on_stop_signal(int sig) {
  g_stop = sig;
}

int fail(const std::string& sentence) {
  std::cerr << "stepflow: " << sentence << "\n";
  return 2;
}

constexpr const char* admin_user_key = "admin_user";
constexpr const char* admin_hash_key = "admin_password_hash";

/// Sets up the local administrator on first start (PowerFlow's isadmin):
/// the password comes from $STEPFLOW_ADMIN_PASSWORD or is generated and
/// printed once. Returns {user, hash}.
caf::expected<std::pair<std::string, std::string>> admin_account(kv_store& store) {
  auto user = store.get(table::meta, admin_user_key);
  auto hash = store.get(table::meta, admin_hash_key);
  if (!user)
    return user.error();
  if (!hash)
    return hash.error();
  std::string name = *user && !(*user)->empty() ? **user : "isadmin";
  if (const char* u = std::getenv("STEPFLOW_ADMIN_USER"); u && *u)
    name = u;
  const char* env_pw = std::getenv("STEPFLOW_ADMIN_PASSWORD");
  std::string stored = *hash ? **hash : std::string{};
  bool write = false;
  if (env_pw && *env_pw) {
    if (stored.empty() || !verify_password(env_pw, stored)) {
      stored = hash_password(env_pw);
      write = true;
    }
  } else if (stored.empty()) {
    auto pw = generate_password();
    stored = hash_password(pw);
    write = true;
    std::cout << fmt::format("stepflow: created the administrator {} with password {} "
                             "(shown once; set STEPFLOW_ADMIN_PASSWORD to choose one)",
                             name, pw)
              << std::endl;
  }
  if (write || !*user || **user != name) {
    if (auto err = store.write({{write_op::put, table::meta, admin_user_key, name},
                                {write_op::put, table::meta, admin_hash_key, stored}}))
      return err;
  }
  return std::make_pair(name, stored);
}

} // namespace

int run_server(const serve_options& o, const cli_environment& env) {
  // Listen address.
  auto colon = o.listen.rfind(':');
  if (colon == std::string::npos)
    return fail(fmt::format("--listen {} must be HOST:PORT", quote_json(o.listen)));
  http_server_options hso;
  hso.host = o.listen.substr(0, colon);
  if (hso.host.size() > 2 && hso.host.front() == '[' && hso.host.back() == ']')
    hso.host = hso.host.substr(1, hso.host.size() - 2);
  try {
    auto port = std::stoul(o.listen.substr(colon + 1));
    if (port > 65535)
      throw std::out_of_range("port");
    hso.port = static_cast<uint16_t>(port);
  } catch (...) {
    return fail(fmt::format("--listen {}: the port must be a number from 0 to 65535",
                            quote_json(o.listen)));
  }
  hso.threads = o.http_threads;
  hso.tls_cert_file = o.tls_cert;
  hso.tls_key_file = o.tls_key;
  task_service_options tso;
  tso.default_workers = o.workers;
  tso.max_queue_depth = o.max_queue_depth;
  for (const auto& qw : o.queue_workers) {
    auto eq = qw.find('=');
    if (eq == std::string::npos || eq == 0)
      return fail(fmt::format("--queue-workers {} must be NAME=N", quote_json(qw)));
    try {
      tso.queue_workers[qw.substr(0, eq)] = std::stoul(qw.substr(eq + 1));
    } catch (...) {
      return fail(fmt::format("--queue-workers {}: N must be a number", quote_json(qw)));
    }
  }
  // Check the TLS files before anything is created (the first start prints the
  // generated admin password once; a failed start must not swallow it).
  for (const auto& f : {o.tls_cert, o.tls_key})
    if (!f.empty() && access(f.c_str(), R_OK) != 0)
      return fail(fmt::format("cannot read TLS file {}: {}", f, std::strerror(errno)));
  if (o.tls_cert.empty() != o.tls_key.empty())
    return fail("TLS needs both --tls-cert and --tls-key");
  // Store and secrets.
  store_options so;
  so.path = o.data_dir.empty() ? default_data_dir() : o.data_dir;
  so.sync = o.sync;
  auto store = open_lmdb_store(so);
  if (!store)
    return fail(fmt::format("cannot open the data directory {}: {}", so.path,
                            message_of(store.error())));
  auto key = load_or_create_key((fs::path(so.path) / "encryption_key").string());
  if (!key)
    return fail(message_of(key.error()));
  auto admin = admin_account(**store);
  if (!admin)
    return fail(fmt::format("cannot set up the administrator: {}", message_of(admin.error())));
  // Retention and cache sweep at start.
  run_store runs{**store};
  if (o.retention_days > 0)
    (void) runs.purge_before(system_clock().now_ns()
                             - int64_t{o.retention_days} * 86'400'000'000'000);
  stepflow::cache cache{**store, system_clock()};
  (void) cache.sweep_expired();
  // Engine and services.
  http_client http;
  forwarding_launcher launcher;
  step_services services{store->get(), &cache, &http, &system_clock(), &launcher};
  auto eng = std::make_unique<engine>(engine_options{}, services);
  const secret_key& k = *key;
  task_service svc{tso, **store, *eng, *env.registry,
                   [&k](configuration c) { return decrypt_configuration(k, std::move(c)); }};
  launcher.target = &svc;
  std::vector<syncpack_content> packs;
  if (auto err = load_bundled_syncpacks(packs, o.syncpacks, so.path, env))
    return fail(message_of(err));
  for (auto& p : packs)
    for (auto& c : p.configs) {
      auto enc = encrypt_configuration(k, std::move(c));
      if (!enc)
        return fail(message_of(enc.error()));
      c = std::move(*enc);
    }
  if (auto err = svc.load_content(packs))
    return fail(fmt::format("cannot load content: {}", message_of(err)));
  // Uploaded steps (POST /steps) become runnable again before queued runs
  // that name them are recovered.
  auto install_step = [&env, dir = so.path](const json::object& def) -> caf::error {
    if (!env.install_step)
      return make_error(errc::unavailable, "this build has no step host");
    return env.install_step(def, dir);
  };
  (void) store->get()->scan(table::steps, {}, {}, false, [&](std::string_view key, std::string_view v) {
    auto def = parse_json(v, "stored step");
    caf::error err = def && def->is_object() ? install_step(def->get_object())
                                             : make_error(errc::bad_json, "unreadable definition");
    if (err)
      std::cerr << fmt::format("stepflow: uploaded step {} does not run: {}\n", key,
                               message_of(err));
    return true;
  });
  auto recovered = svc.recover();
  if (!recovered)
    return fail(fmt::format("cannot recover queued runs: {}", message_of(recovered.error())));
  // API.
  credential_cache creds;
  auto admin_name = admin->first;
  auto admin_hash = admin->second;
  rest_api_context actx;
  actx.service = &svc;
  actx.cache = &cache;
  actx.version = env.version;
  actx.authenticate = [&creds, admin_name, admin_hash](const http_request_data& req) {
    auto basic = parse_basic_auth(req.header("Authorization"));
    if (!basic || basic->first != admin_name)
      return std::string{};
    const auto& pw = basic->second;
    bool ok = creds.check(basic->first, pw, [&] { return verify_password(pw, admin_hash); });
    return ok ? basic->first : std::string{};
  };
  actx.encrypt_config = [&k](configuration c) { return encrypt_configuration(k, std::move(c)); };
  actx.show_config = [](const configuration& c) { return masked(c); };
  actx.install_step = install_step;
  actx.remove_step = env.remove_step;
  auto* store_ptr = store->get();
  std::atomic<const http_server*> http_ptr{nullptr}; // set once the server runs
  actx.health = [store_ptr, &eng, &env, &http_ptr]() {
    auto st = store_ptr->stats();
    auto histogram = [](const duration_counts& counts) {
      json::object o;
      for (size_t b = 0; b < counts.size(); ++b)
        o[duration_bucket_name(b)] = counts[b];
      return o;
    };
    json::object out{{"store", json::object{{"status", "ok"},
                                            {"map_size", st.map_size},
                                            {"commits", st.commits},
                                            {"batches", st.batches},
                                            {"commit_ms", json::object{
                                              {"p50", static_cast<double>(st.commit_us_p50) / 1000},
                                              {"p99", static_cast<double>(st.commit_us_p99) / 1000},
                                              {"max", static_cast<double>(st.commit_us_max) / 1000},
                                              {"window", store_stats::commit_window}}},
                                            {"slow_commits", st.slow_commits},
                                            {"commit_ms_histogram", histogram(st.commit_histogram)},
                                            {"map_resizes", st.map_resizes}}},
                     {"engine", json::object{{"active_runs", eng->active_runs()}}}};
    if (const auto* hs = http_ptr.load()) {
      out["http"] = json::object{{"requests", hs->requests()},
                                 {"latency_ms_histogram", histogram(hs->latency_histogram())}};
    }
    if (env.connector_status)
      for (auto& kv : env.connector_status())
        out[kv.key()] = std::move(kv.value());
    return out;
  };
  rest_api api{std::move(actx)};
  auto server = http_server::start(hso, [&api](std::shared_ptr<const http_request_data> req,
                                               http_responder respond) {
    api.handle(std::move(req), std::move(respond));
  });
  if (!server)
    return fail(message_of(server.error()));
  http_ptr = server->get();
  auto port = (*server)->port();
  if (!o.port_file.empty()) {
    std::ofstream pf(o.port_file + ".tmp");
    pf << port << "\n";
    pf.close();
    std::rename((o.port_file + ".tmp").c_str(), o.port_file.c_str());
  }
  std::cout << fmt::format("stepflow {} serving on {}://{}:{} (data {}, {} queued runs "
                           "recovered, user {})",
                           env.version, (*server)->tls() ? "https" : "http", hso.host, port,
                           so.path, *recovered, admin_name)
            << std::endl;
  std::signal(SIGINT, on_stop_signal);
  std::signal(SIGTERM, on_stop_signal);
  std::signal(SIGPIPE, SIG_IGN);
  while (!g_stop)
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  // Graceful shutdown: stop accepting, answer what is in progress, stop
  // starting runs, give running runs a grace period. Anything unfinished is
  // still queued in the store and runs again at the next start.
  std::cout << "stepflow: stopping" << std::endl;
  svc.stop_dispatching();
  (*server)->stop(std::chrono::milliseconds(5000));
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(o.shutdown_grace_s);
  while (eng->active_runs() > 0 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  if (eng->active_runs() > 0) {
    std::cout << fmt::format("stepflow: {} runs still running; they stay queued and run again "
                             "at the next start", eng->active_runs())
              << std::endl;
    std::fflush(nullptr);
    std::_Exit(0); // committed state is durable; nothing acknowledged is lost
  }
  http_ptr = nullptr;
  server->reset();
  eng.reset();
  std::cout << "stepflow: stopped" << std::endl;
  return 0;
}

} // namespace stepflow::actors
