// `chipmesh bench allgather|reduce_scatter|broadcast|reduce|alltoall`: an
// nccl-tests style table of a built-in collective (float32; sum for the
// reducing ones; root 0) through the typed Orchestrator API over
// Worker::world(), out of place and in place side by side, for 8 B .. 64 MiB
// in x4 steps on 2, 4 and 8 ranks. Every size is checked once per placement
// (#wrong). Sizes and bus bandwidth follow nccl-tests: size is the larger
// buffer of a rank (allgather: the output, reduce_scatter: the input,
// alltoall: either), busbw = algbw * (n-1)/n for allgather, reduce_scatter
// and alltoall, * 1 for broadcast and reduce. In place as nccl-tests:
// allgather's input is block r of its output, reduce_scatter's output block
// r of its input, the others' in == out. Out of place, also the time per
// operation of --iters calls submitted back to back in one run().
//
// In the same invocation, per rank count: the Open MPI peer
// (bench/mpi/mpi_collectives.c: MPI_Allgather, MPI_Reduce_scatter_block,
// MPI_Bcast, MPI_Reduce, MPI_Alltoall over the same sizes and data, its
// results checked too) and memcpy of the same size, for the target ">= 1.5x
// Open MPI's busbw and >= 50% of memcpy at >= 1 MiB".
#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>

#include "bench.h"
#include "chipmesh/collectives.h"
#include "mpi_peer.h"
#include "chipmesh/worker.h"

namespace chipmesh::bench {

namespace {

enum class Coll { kAllgather, kReduceScatter, kBroadcast, kReduce, kAlltoall };

struct CollInfo {
  Coll coll;
  const char* name;
  bool in_n, out_n;  // buffer holds n blocks
  bool reduces;
};

constexpr CollInfo kInfos[] = {{Coll::kAllgather, "allgather", false, true, false},
                               {Coll::kReduceScatter, "reduce_scatter", true, false, true},
                               {Coll::kBroadcast, "broadcast", false, false, false},
                               {Coll::kReduce, "reduce", false, false, true},
                               {Coll::kAlltoall, "alltoall", true, true, false}};

double bus_factor(Coll c, int n) {
  if (c == Coll::kBroadcast || c == Coll::kReduce) return 1.0;
  return n > 1 ? static_cast<double>(n - 1) / n : 0.0;
}


int total_iters(uint64_t bytes, bool quick) {
  if (quick) return 3;
  return static_cast<int>(std::clamp<uint64_t>((uint64_t{1} << 30) / std::max<uint64_t>(bytes, 1), 5, 200));
}

// memcpy bandwidth (GB/s, median) of each size, between two host buffers.
std::map<uint64_t, double> memcpy_bandwidth(const std::vector<uint64_t>& sizes, bool quick) {
  std::map<uint64_t, double> gb;
  if (sizes.empty()) return gb;
  std::vector<unsigned char> a(sizes.back(), 1), b(sizes.back(), 0);
  for (uint64_t s : sizes) {
    std::vector<double> us;
    for (int r = 0; r < std::max(3, total_iters(s, quick) / 4); ++r) {
      const auto t0 = Clock::now();
      std::memcpy(b.data(), a.data(), s);
      us.push_back(us_between(t0, Clock::now()));
    }
    gb[s] = gbps(static_cast<double>(s), median_of(us));
  }
  return gb;
}

}  // namespace

BenchResult run_collective(const BenchOptions& o, const std::string& which) {
  const CollInfo* info = nullptr;
  for (const auto& i : kInfos)
    if (which == i.name) info = &i;
  BenchResult res;
  res.name = which;
  if (!info) {
    res.failed = true;
    res.notes.push_back("unknown collective " + which);
    return res;
  }
  const auto start = Clock::now();
  const std::vector<int> ranks =
      !o.ranks.empty() ? o.ranks : o.quick ? std::vector<int>{2} : std::vector<int>{2, 4, 8};
  const uint64_t lo = o.min_bytes ? o.min_bytes : 8;
  const uint64_t hi = o.max_bytes ? o.max_bytes : o.quick ? (uint64_t{32} << 10) : (uint64_t{64} << 20);
  say(o.out, "%s: float32%s, root 0, %s .. %s (x4), ranks {", info->name, info->reduces ? " sum" : "",
      size_label(lo).c_str(), size_label(hi).c_str());
  for (int n : ranks) say(o.out, " %d", n);
  say(o.out, " }\n");
  MpiPeer mpi(o);
  try {
    TempDir tmp;
    for (int n : ranks) {
      // Sizes: the larger buffer, a multiple of n floats.
      const uint64_t unit = 4 * ((info->in_n || info->out_n) ? static_cast<uint64_t>(n) : 1);
      std::vector<uint64_t> sizes;
      for (uint64_t s = std::max(lo, unit); s <= hi; s *= 4) sizes.push_back(s / unit * unit);
      if (sizes.empty()) sizes.push_back(unit);
      const uint64_t max_bytes = sizes.back();
      // --memory malloc: no buffers, the whole window is staging area.
      const bool on_malloc = o.memory == "malloc";
      const uint64_t window = on_malloc ? (o.stage_bytes ? o.stage_bytes : uint64_t{4} << 20) : 2 * max_bytes + 4096;
      WorkerConfig cfg;
      cfg.platform = o.platform;
      const std::string rootinfo = tmp.fresh("rootinfo");
      for (int r = 0; r < n; ++r) {
        cfg.device_ids.push_back(r);
        ChipBootstrapConfig c;
        c.comm = ChipCommBootstrapConfig{r, n, rootinfo, static_cast<size_t>(window)};
        ChipBufferSpec in{"input", DataType::FLOAT32, max_bytes / 4, max_bytes};
        ChipBufferSpec out{"output", DataType::FLOAT32, max_bytes / 4, max_bytes};
        if (!on_malloc) c.buffers = {in, out};
        cfg.chip_bootstrap_configs.push_back(std::move(c));
      }
      say(o.out, "  %d ranks: bring-up with %s windows%s\n", n, size_label(window).c_str(),
          on_malloc ? ", data in Worker::malloc memory" : "");
      Worker w(std::move(cfg));
      w.init();
      const CommDomain& world = w.world();
      std::vector<uint64_t> in(n), out(n);
      for (int r = 0; r < n; ++r) {
        in[r] = on_malloc ? w.malloc(r, max_bytes) : world.context(r).buffer_ptrs.at("input");
        out[r] = on_malloc ? w.malloc(r, max_bytes) : world.context(r).buffer_ptrs.at("output");
      }
      // In place as nccl-tests has it: allgather's input is the rank's block
      // of its output, reduce_scatter's output the rank's block of its input,
      // and the others' input is their output.
      struct Buffers {
        uint64_t count;  // per rank (per block)
        std::vector<uint64_t> src, dst;
      };
      auto buffers = [&](uint64_t bytes, bool in_place) {
        Buffers b{bytes / unit, in_place ? out : in, out};
        if (!in_place) return b;
        for (int r = 0; r < n; ++r) {
          const uint64_t block = static_cast<uint64_t>(r) * b.count * 4;
          if (info->coll == Coll::kAllgather) b.src[static_cast<size_t>(r)] += block;
          if (info->coll == Coll::kReduceScatter) b.dst[static_cast<size_t>(r)] += block;
        }
        return b;
      };
      // One typed call per run(), or `ops` of them back to back in one (the
      // buffers made before the clock starts).
      auto call = [&](const Buffers& b, int ops = 1) {
        const uint64_t count = b.count;
        const std::vector<uint64_t>& src = b.src;
        const std::vector<uint64_t>& dst = b.dst;
        w.run([&](Orchestrator& orch) {
          for (int k = 0; k < ops; ++k) {
            switch (info->coll) {
              case Coll::kAllgather: orch.allgather(world, src, dst, count, DataType::FLOAT32); break;
              case Coll::kReduceScatter:
                orch.reduce_scatter(world, src, dst, count, DataType::FLOAT32, ReduceOp::SUM);
                break;
              case Coll::kBroadcast: orch.broadcast(world, src, dst, count, DataType::FLOAT32, 0); break;
              case Coll::kReduce: orch.reduce(world, src, dst, count, DataType::FLOAT32, ReduceOp::SUM, 0); break;
              case Coll::kAlltoall: orch.all_to_all(world, src, dst, count, DataType::FLOAT32); break;
            }
          }
        });
      };
      // Inputs written before every checked call (in place overwrites them).
      auto fill_inputs = [&](uint64_t bytes, bool in_place) {
        const uint64_t elems = (info->in_n ? bytes : bytes / (info->out_n ? n : 1)) / 4;
        const Buffers b = buffers(bytes, in_place);
        std::vector<float> host(elems);
        for (int r = 0; r < n; ++r) {
          for (uint64_t i = 0; i < elems; ++i) host[i] = input_value(r, i);
          if (elems) w.copy_to(r, b.src[static_cast<size_t>(r)], host.data(), elems * 4);
        }
      };
      auto check = [&](uint64_t bytes, bool in_place) -> int64_t {
        const uint64_t count = bytes / unit;
        const uint64_t out_elems = info->out_n ? count * n : count;
        const Buffers b = buffers(bytes, in_place);
        // Outputs NaN first, also in place (then the inputs go over them), so
        // that a result left by the call before never passes for this one's.
        std::vector<float> nan(out_elems, NAN);
        for (int r = 0; r < n; ++r)
          if (out_elems) w.copy_to(r, b.dst[static_cast<size_t>(r)], nan.data(), out_elems * 4);
        fill_inputs(bytes, in_place);
        call(b);
        int64_t wrong = 0;
        std::vector<float> back(out_elems);
        for (int r = 0; r < n; ++r) {
          if (info->coll == Coll::kReduce && r != 0) continue;
          if (out_elems) w.copy_from(r, back.data(), b.dst[static_cast<size_t>(r)], out_elems * 4);
          for (uint64_t i = 0; i < out_elems; ++i) {
            float want = 0;
            switch (info->coll) {
              case Coll::kAllgather: want = input_value(static_cast<int>(i / count), i % count); break;
              case Coll::kReduceScatter:
                for (int j = 0; j < n; ++j) want += input_value(j, r * count + i);
                break;
              case Coll::kBroadcast: want = input_value(0, i); break;
              case Coll::kReduce:
                for (int j = 0; j < n; ++j) want += input_value(j, i);
                break;
              case Coll::kAlltoall: want = input_value(static_cast<int>(i / count), r * count + i % count); break;
            }
            wrong += !(back[i] == want);
          }
        }
        return wrong;
      };

      // The peers over the same sizes: Open MPI (one mpirun for every size,
      // after chipmesh's runs, so the two never share the cores) and memcpy.
      const int ops = stream_ops(o);
      auto measure_mpi = [&]() {
        std::map<uint64_t, PeerPoint> mp;
        if (!mpi.available()) return mp;
        std::vector<std::string> args{info->name};
        for (uint64_t s : sizes)
          args.push_back(std::to_string(s) + ":" + std::to_string(total_iters(s, o.quick)) + ":" +
                         (o.quick ? "1" : "3") + ":" + std::to_string(ops) + ":" +
                         std::to_string(std::max(1, total_iters(s, o.quick) / ops)));
        say(o.out, "  %d ranks: Open MPI\n", n);
        ProcessResult pr = mpi.run(n, MpiPeer::kCollectivesProgram, args, o.quick ? 120.0 : 400.0);
        if (pr.ok()) parse_peer_output(pr.out, mp);
        return mp;
      };
      const std::string where = on_malloc ? ", data in Worker::malloc memory staged through " + size_label(window) +
                                                " windows" : "";
      Table t(which + "_n" + std::to_string(n) + (on_malloc ? "_malloc" : ""),
              which + ", " + std::to_string(n) + " ranks, float32" + (info->reduces ? " sum" : "") + where +
                  ", root 0 (median; busbw factor " +
                  (bus_factor(info->coll, 4) == 1.0 ? std::string("1") : std::string("(n-1)/n")) + ")",
              {{"size_bytes", "size(B)", 0},
               {"count", "count", 0},
               {"type", "type", 0},
               {"redop", "redop", 0},
               {"root", "root", 0},
               {"time_us", "time(us)", 1},
               {"stream_us", "stream(us/op)", 2},
               {"algbw_gbps", "algbw(GB/s)", 2},
               {"busbw_gbps", "busbw(GB/s)", 2},
               {"wrong", "#wrong", 0},
               {"ip_time_us", "in-place time(us)", 1},
               {"ip_algbw_gbps", "algbw(GB/s)", 2},
               {"ip_busbw_gbps", "busbw(GB/s)", 2},
               {"ip_wrong", "#wrong", 0},
               {"mpi_time_us", "MPI time(us)", 1},
               {"mpi_stream_us", "MPI stream(us/op)", 2},
               {"mpi_busbw_gbps", "MPI busbw(GB/s)", 2},
               {"mpi_wrong", "MPI #wrong", 0},
               {"ratio_mpi", "x MPI", 2},
               {"memcpy_gbps", "memcpy(GB/s)", 2},
               {"ratio_memcpy", "busbw/memcpy", 2}});
      double bus_sum = 0, mpi_bus_sum = 0;
      // The verdict is on the single operation, as in every run before; the
      // back-to-back ratios are printed beside it.
      WorstRatios worst;
      int bus_n = 0, mpi_bus_n = 0;
      bool big_seen = false, big_mpi = true;
      int64_t big_wrong = 0;
      std::vector<std::vector<Cell>> rows;
      std::vector<double> outs;  // chipmesh out-of-place busbw per size
      std::vector<double> stream_outs;  // the same from the back-to-back time per operation
      for (uint64_t s : sizes) {
        Cell cells[2][4];
        Cell stream_cell;
        for (int place = 0; place < 2; ++place) {
          const bool in_place = place == 1;
          const int64_t wrong = check(s, in_place);
          res.wrong += wrong;
          const Buffers b = buffers(s, in_place);
          std::vector<double> us;
          for (int k = 0; k < total_iters(s, o.quick); ++k) {
            const auto t0 = Clock::now();
            call(b);
            us.push_back(us_between(t0, Clock::now()));
          }
          const double med = median_of(us);
          if (!in_place) {
            std::vector<double> per_op;
            for (int k = 0; k < std::max(1, total_iters(s, o.quick) / ops); ++k) {
              const auto t0 = Clock::now();
              call(b, ops);
              per_op.push_back(us_between(t0, Clock::now()) / ops);
            }
            stream_cell = median_of(per_op);
            stream_outs.push_back(gbps(static_cast<double>(s), median_of(per_op)) * bus_factor(info->coll, n));
          }
          const double alg = gbps(static_cast<double>(s), med), bus = alg * bus_factor(info->coll, n);
          cells[place][0] = med, cells[place][1] = alg, cells[place][2] = bus, cells[place][3] = wrong;
          bus_sum += bus, ++bus_n;
          if (!in_place) outs.push_back(bus);
          if (s >= (uint64_t{1} << 20)) big_wrong += wrong;
        }
        rows.push_back({static_cast<int64_t>(s), static_cast<int64_t>(s / 4), std::string("float"),
                        std::string(info->reduces ? "sum" : "none"), int64_t{0}, cells[0][0], stream_cell, cells[0][1],
                        cells[0][2], cells[0][3], cells[1][0], cells[1][1], cells[1][2], cells[1][3]});
      }
      w.close();
      std::map<uint64_t, PeerPoint> mp = measure_mpi();
      const std::map<uint64_t, double> mc = memcpy_bandwidth(sizes, o.quick);
      for (size_t i = 0; i < sizes.size(); ++i) {
        const uint64_t s = sizes[i];
        const double bus = outs[i], mcg = mc.at(s);
        Cell mt, mst, mb, mw, ratio;
        double mbus = 0;
        if (auto it = mp.find(s); it != mp.end() && !it->second.us.empty()) {
          const double med = median_of(it->second.us);
          mbus = gbps(static_cast<double>(s), med) * bus_factor(info->coll, n);
          mt = med, mb = mbus, mw = it->second.wrong;
          if (!it->second.stream_us.empty()) mst = median_of(it->second.stream_us);
          if (mbus > 0) ratio = bus / mbus;
          if (it->second.wrong > 0) res.wrong += it->second.wrong;
          mpi_bus_sum += mbus, ++mpi_bus_n;
        }
        if (s >= (uint64_t{1} << 20)) {
          big_seen = true;
          WorstRatios::lower(worst.memcpy, bus / mcg);
          if (mbus > 0) WorstRatios::lower(worst.mpi, bus / mbus);
          else big_mpi = false;
          const double sbus = stream_outs[i];
          WorstRatios::lower(worst.stream_memcpy, sbus / mcg);
          if (const double* mst_us = std::get_if<double>(&mst); mst_us && *mst_us > 0) {
            const double mpi_sbus = gbps(static_cast<double>(s), *mst_us) * bus_factor(info->coll, n);
            WorstRatios::lower(worst.stream_mpi, sbus / mpi_sbus);
          }
        }
        std::vector<Cell> row = rows[i];
        for (Cell c : {mt, mst, mb, mw, ratio, Cell{mcg}, mcg > 0 ? Cell{bus / mcg} : Cell{}}) row.push_back(c);
        t.add_row(std::move(row));
      }
      char line[160];
      std::snprintf(line, sizeof line, "Avg bus bandwidth    : %.4f GB/s (chipmesh %s, %d ranks)",
                    bus_n ? bus_sum / bus_n : 0.0, info->name, n);
      t.add_note(line);
      if (mpi_bus_n) {
        static const char* calls[] = {"MPI_Allgather", "MPI_Reduce_scatter_block", "MPI_Bcast", "MPI_Reduce",
                                      "MPI_Alltoall"};
        std::snprintf(line, sizeof line, "Avg bus bandwidth    : %.4f GB/s (Open MPI %s, %d ranks)",
                      mpi_bus_sum / mpi_bus_n, calls[static_cast<int>(info->coll)], n);
        t.add_note(line);
      }
      t.add_note(mpi.note());
      t.add_note("x MPI = chipmesh busbw / Open MPI busbw, out of place; busbw/memcpy likewise");
      if (info->coll == Coll::kAllgather || info->coll == Coll::kReduceScatter)
        t.add_note(std::string("in place as nccl-tests: ") +
                   (info->coll == Coll::kAllgather ? "input = output + rank * count" : "output = input + rank * count"));
      res.tables.push_back(std::move(t));
      Target tg{which + " busbw, " + std::to_string(n) + " ranks, >= 1 MiB" + (on_malloc ? " (malloc memory)" : ""),
                "not measured (no size >= 1 MiB)",
                ">= 1.5x Open MPI and >= 50% of memcpy", false, false};
      if (big_seen) {
        tg.measured = worst.text(big_mpi);
        if (big_wrong) tg.measured += "; WRONG RESULTS (" + std::to_string(big_wrong) + " elements)";
        tg.known = big_mpi && worst.mpi != WorstRatios::kNone;
        tg.met = tg.known && worst.mpi >= 1.5 && worst.memcpy >= 0.5 && big_wrong == 0;
      }
      res.targets.push_back(tg);
      say(o.out, "  %d ranks: avg busbw %.3f GB/s\n", n, bus_n ? bus_sum / bus_n : 0.0);
    }
  } catch (const std::exception& e) {
    res.failed = true;
    res.notes.push_back(std::string("chipmesh failed: ") + e.what());
    say(o.out, "%s: FAILED: %s\n", info->name, e.what());
  }
  res.notes.push_back(mpi.note());
  if (mpi.available() || !mpi.version().empty())
    res.notes.push_back("MPI command: " + mpi.command_line(2, MpiPeer::kCollectivesProgram,
                                                          {which, "BYTES:ITERS:WARMUP:OPS:REPS", "..."}));
  res.notes.push_back("time: Worker::run() of one typed collective call until every rank is done, median; size = "
                      "the larger buffer of a rank (nccl-tests); stream: one Worker::run() of " +
                      std::to_string(stream_ops(o)) + " calls back to back, its time per call, median over runs");
  res.seconds = std::chrono::duration<double>(Clock::now() - start).count();
  return res;
}

}  // namespace chipmesh::bench
