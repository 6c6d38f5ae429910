#include "env_command.h"

#include <cstdio>
#include <string>

#include <nlohmann/json.hpp>

#include "knobs/knobs.h"

namespace chipmesh::cli {

CLI::App* register_env_command(CLI::App& app, EnvOptions& opts) {
  CLI::App* sub = app.add_subcommand("env", "list every CHIPMESH_* environment knob: value, default, source, doc");
  sub->footer(
      "Prints every environment variable chipmesh reads, as this process sees it: its value, its default, where "
      "the value came from (environment or default) and what it does. A value that is set but invalid is "
      "reported with the reason and makes the exit status 1. CHIPMESH_* variables that name no knob (a typo: "
      "the knob meant stays unset; or a script's own variable) are listed last, with the knob a typo most "
      "likely meant.");
  sub->add_flag("--json", opts.json,
                "print one JSON object: {\"knobs\": [{name, type, value, default, source, doc}], \"unknown\": "
                "[{name, value, did_you_mean}]}");
  sub->add_flag("--all", opts.all, "also list the test-only hooks");
  return sub;
}

int run_env(const EnvOptions& opts) {
  const auto entries = knobs::snapshot();
  const auto unknown = knobs::unknown_in_environment();
  int invalid = 0;
  if (opts.json) {
    nlohmann::json list = nlohmann::json::array();
    for (const auto& e : entries) {
      if (e.spec->test_only && !opts.all) continue;
      nlohmann::json k = {{"name", e.spec->name},
                          {"type", knobs::type_name(e.spec->type)},
                          {"value", e.value},
                          {"default", e.spec->default_value},
                          {"source", knobs::source_name(e.source)},
                          {"test_only", e.spec->test_only},
                          {"doc", e.spec->doc}};
      if (!e.error.empty()) {
        k["error"] = e.error;
        ++invalid;
      }
      list.push_back(std::move(k));
    }
    nlohmann::json others = nlohmann::json::array();
    for (const auto& u : unknown)
      others.push_back({{"name", u.name}, {"value", u.value}, {"did_you_mean", u.nearest}});
    std::printf("%s\n", nlohmann::json{{"knobs", list}, {"unknown", others}}.dump(2).c_str());
  } else {
    for (const auto& e : entries) {
      if (e.spec->test_only && !opts.all) continue;
      std::printf("%s=%s\n", e.spec->name, e.value.c_str());
      std::printf("    %s, default '%s', from %s%s\n", knobs::type_name(e.spec->type), e.spec->default_value,
                  knobs::source_name(e.source), e.spec->test_only ? " (test hook)" : "");
      if (!e.error.empty()) {
        std::printf("    INVALID: %s\n", e.error.c_str());
        ++invalid;
      }
      std::printf("    %s\n", e.spec->doc);
    }
    if (!unknown.empty()) std::printf("\nSet, but not a knob of chipmesh (a typo, or a script's own variable):\n");
    for (const auto& u : unknown)
      std::printf("%s=%s%s\n", u.name.c_str(), u.value.c_str(),
                  u.nearest.empty() ? "" : ("    (did you mean " + u.nearest + "?)").c_str());
  }
  for (const auto& u : unknown)
    if (!u.nearest.empty())
      std::fprintf(stderr, "chipmesh env: %s is not a knob; did you mean %s?\n", u.name.c_str(),
                   u.nearest.c_str());
  for (const auto& e : entries)
    if (!e.error.empty() && (!e.spec->test_only || opts.all)) std::fprintf(stderr, "chipmesh env: %s\n", e.error.c_str());
  return invalid == 0 ? 0 : 1;
}

}  // namespace chipmesh::cli
