// gpu/ memory vocabulary: GpuAvailable's reasons, the DeviceArena cap (checked against cudaMemGetInfo),
// pinned and registered host memory, streams, events and copies. GPU tests skip, with the reason, where there
// is none.
#include <cstring>
#include <string>
#include <vector>

#include "gpu/gpu.h"
#include "gtest/gtest.h"
#include "io/dtype.h"
#include "tests/testing/gpu_test_macros.h"

namespace ringmoe::gpu {
namespace {

constexpr int64_t kMiB = int64_t{1} << 20;

TEST(GpuAvailableTest, GivesAReasonWhenFalse) {
  std::string why_not;
  bool available = GpuAvailable(&why_not);
#if !RINGMOE_HAVE_CUDA
  EXPECT_FALSE(available);
  EXPECT_EQ(why_not, "built without CUDA");
#endif
  if (!available) {
    EXPECT_FALSE(why_not.empty());
    absl::Status status = RequireGpu();
    EXPECT_TRUE(absl::IsUnavailable(status)) << status;
    EXPECT_EQ(status.message(), why_not);
  } else {
    EXPECT_TRUE(RequireGpu().ok());
    EXPECT_FALSE(CompiledCudaArchitectures().empty());
  }
  EXPECT_EQ(GpuAvailable(), available);  // Cached, and the reason is optional.
}

// Without a usable GPU (or without CUDA) every entry point says so instead of crashing.
TEST(GpuAvailableTest, EveryEntryPointIsUnavailableWithoutAGpu) {
  if (GpuAvailable()) GTEST_SKIP() << "a GPU is present";
  DeviceArena arena(kMiB);
  EXPECT_TRUE(absl::IsUnavailable(arena.Allocate(1024, "test").status()));
  EXPECT_EQ(arena.used_bytes(), 0);
  EXPECT_TRUE(absl::IsUnavailable(Stream::Create().status()));
  EXPECT_TRUE(absl::IsUnavailable(Event::Create().status()));
  EXPECT_TRUE(absl::IsUnavailable(PinnedHostBuffer::Allocate(1024, "test").status()));
  std::vector<uint8_t> memory(4096);
  EXPECT_TRUE(absl::IsUnavailable(HostRegistration::Register(memory.data(), 4096, "test").status()));
  EXPECT_TRUE(absl::IsUnavailable(BlasHandle::Create(arena).status()));
  EXPECT_TRUE(absl::IsUnavailable(SectionRing::Create(arena, 2, kMiB).status()));
  EXPECT_TRUE(absl::IsUnavailable(MoeRunner::Create(arena, MoeShape{64, 32, 4, 2}, 8).status()));
  EXPECT_TRUE(absl::IsUnavailable(QueryDeviceMemory().status()));
  EXPECT_TRUE(absl::IsUnavailable(QueryDeviceProperties().status()));
  EXPECT_TRUE(absl::IsUnavailable(ProbeGpu(GpuProbeOptions{}).status()));
  Stream no_stream;
  EXPECT_TRUE(absl::IsUnavailable(RmsNorm(nullptr, nullptr, 1, 1, 1e-6f, nullptr, no_stream)));
  EXPECT_TRUE(absl::IsUnavailable(
      RouteTopK(nullptr, 1, 8, 2, cpu::RouterScoring::kTopKThenSoftmax, false, nullptr, nullptr, no_stream)));
#if !RINGMOE_HAVE_CUDA
  EXPECT_EQ(arena.Allocate(1024, "test").status().message(), "built without CUDA");
#endif
}

TEST(HostMemoryTest, MemlockTextNamesTheLimit) {
  std::string text = MemlockLimitText();
  EXPECT_NE(text.find("RLIMIT_MEMLOCK"), std::string::npos) << text;
  EXPECT_NE(text.find("ulimit -l"), std::string::npos) << text;
}

TEST(DeviceArenaTest, RejectsNegativeSizesAndGivesEmptyBuffersForZero) {
  DeviceArena arena(kMiB);
  EXPECT_TRUE(absl::IsInvalidArgument(arena.Allocate(-1, "bad").status()));
  auto empty = arena.Allocate(0, "nothing");
  ASSERT_TRUE(empty.ok());
  EXPECT_TRUE(empty->empty());
  EXPECT_EQ(arena.used_bytes(), 0);
}

TEST(DeviceArenaTest, EnforcesTheCap) {
  SKIP_WITHOUT_GPU();
  DeviceArena arena(64 * kMiB);
  auto first = arena.Allocate(40 * kMiB, "first block");
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_EQ(arena.used_bytes(), 40 * kMiB);
  auto second = arena.Allocate(30 * kMiB, "expert slot 7");
  ASSERT_FALSE(second.ok());
  EXPECT_TRUE(absl::IsResourceExhausted(second.status())) << second.status();
  const std::string message(second.status().message());
  EXPECT_NE(message.find("expert slot 7"), std::string::npos) << message;        // Names the request...
  EXPECT_NE(message.find("30.00 MiB"), std::string::npos) << message;            // ...its size...
  EXPECT_NE(message.find("--gpu-mem 64.00 MiB"), std::string::npos) << message;  // ...and the cap.
  EXPECT_EQ(arena.used_bytes(), 40 * kMiB);  // A refused request leaves nothing charged.
  first->Reset();
  EXPECT_EQ(arena.used_bytes(), 0);
  auto third = arena.Allocate(30 * kMiB, "after free");
  ASSERT_TRUE(third.ok()) << third.status();
  EXPECT_EQ(arena.peak_bytes(), 40 * kMiB);
  DeviceBuffer moved = std::move(*third);
  EXPECT_EQ(arena.used_bytes(), 30 * kMiB);
  moved = DeviceBuffer();
  EXPECT_EQ(arena.used_bytes(), 0);
}

// The cap is kept in the device's own accounting: fill the arena to the cap with real users of memory (ring
// slots, the MoE runner's scratch, cuBLAS's workspace), run the kernels, and compare cudaMemGetInfo.
TEST(DeviceArenaTest, DeviceMemoryGrowsByNoMoreThanTheCap) {
  SKIP_WITHOUT_GPU();
  // The CUDA context and module loading are not ours to cap; this much of growth is allowed beyond the cap
  // for lazily loaded kernels (ours, cuBLAS's, CUB's) and the runtime's own small allocations.
  constexpr int64_t kAllowance = 256 * kMiB;
  constexpr int64_t kCap = 1024 * kMiB;
  ASSERT_OK(SynchronizeDevice());  // Creates the context before the baseline.
  auto before = QueryDeviceMemory();
  ASSERT_TRUE(before.ok()) << before.status();
  {
    DeviceArena arena(kCap);
    auto stream = Stream::Create();
    ASSERT_TRUE(stream.ok());
    auto blas = BlasHandle::Create(arena);
    ASSERT_TRUE(blas.ok()) << blas.status();
    const MoeShape shape{1024, 512, 16, 4};
    auto runner = MoeRunner::Create(arena, shape, 256);
    ASSERT_TRUE(runner.ok()) << runner.status();
    const PackedLayerIndex index = MakePackedLayerIndex(shape.num_experts, shape.hidden, shape.intermediate);
    auto ring = SectionRing::Create(arena, 2, index.total_bytes());
    ASSERT_TRUE(ring.ok()) << ring.status();
    auto x = arena.Allocate(int64_t{2} * 256 * shape.hidden, "x");
    auto out = arena.Allocate(int64_t{4} * 256 * shape.hidden, "out");
    auto ids = arena.Allocate(int64_t{4} * 256 * shape.top_k, "ids");
    auto weights = arena.Allocate(int64_t{4} * 256 * shape.top_k, "weights");
    ASSERT_TRUE(x.ok() && out.ok() && ids.ok() && weights.ok());
    // Fill the rest of the cap in 32 MiB blocks until the arena refuses.
    std::vector<DeviceBuffer> filler;
    while (true) {
      auto block = arena.Allocate(32 * kMiB, "filler");
      if (!block.ok()) {
        EXPECT_TRUE(absl::IsResourceExhausted(block.status())) << block.status();
        break;
      }
      filler.push_back(std::move(*block));
    }
    EXPECT_LE(arena.used_bytes(), kCap);
    EXPECT_GT(arena.used_bytes(), kCap - 32 * kMiB);
    // Touch the filler so that the memory is really committed, and run the kernels so they are loaded.
    for (DeviceBuffer& block : filler) ASSERT_OK(FillDeviceBytes(block.data(), 1, block.size(), *stream));
    std::vector<int32_t> host_ids(256 * shape.top_k);
    for (size_t i = 0; i < host_ids.size(); ++i) host_ids[i] = static_cast<int32_t>((i * 7 + i / 4) % 16);
    ASSERT_OK(CopyHostToDevice(ids->data(), host_ids.data(), ids->size(), *stream));
    ASSERT_OK(FillDeviceBytes(weights->data(), 0, weights->size(), *stream));
    ASSERT_OK(FillRandomBf16(x->data(), 256 * shape.hidden, 3, 1.0f, *stream));
    ASSERT_OK(FillRandomBf16(ring->get()->slot_data(0), index.total_bytes() / 2, 4, 0.05f, *stream));
    ASSERT_OK(runner->SortByExpert(ids->as<int32_t>(), 256, *stream));
    ASSERT_OK(runner->RunExperts(*blas, x->data(), weights->as<float>(), ring->get()->slot_data(0), index,
                                 out->as<float>(), *stream));
    ASSERT_OK(stream->Synchronize());
    auto during = QueryDeviceMemory();
    ASSERT_TRUE(during.ok());
    const int64_t grown = before->free_bytes - during->free_bytes;
    std::printf("cap %lld MiB, arena used %lld MiB, device memory grew by %lld MiB (allowance %lld MiB)\n",
                static_cast<long long>(kCap / kMiB), static_cast<long long>(arena.used_bytes() / kMiB),
                static_cast<long long>(grown / kMiB), static_cast<long long>(kAllowance / kMiB));
    EXPECT_LE(grown, kCap + kAllowance);
    // And the measurement sees the arena's memory at all (the check above is not vacuous).
    EXPECT_GE(grown, arena.used_bytes() - 16 * kMiB);
    ASSERT_OK(ring->get()->Drain());
  }
}

TEST(HostMemoryTest, PinnedBufferRoundTrip) {
  SKIP_WITHOUT_GPU();
  DeviceArena arena(0);
  auto stream = Stream::Create();
  ASSERT_TRUE(stream.ok());
  auto pinned = PinnedHostBuffer::Allocate(8 * kMiB, "round trip");
  ASSERT_TRUE(pinned.ok()) << pinned.status();
  auto back = PinnedHostBuffer::Allocate(8 * kMiB, "round trip back");
  ASSERT_TRUE(back.ok());
  auto device = arena.Allocate(8 * kMiB, "round trip");
  ASSERT_TRUE(device.ok());
  for (int64_t i = 0; i < pinned->size(); ++i) pinned->as<uint8_t>()[i] = static_cast<uint8_t>(i * 31 + 7);
  std::memset(back->data(), 0, back->size());
  ASSERT_OK(CopyHostToDevice(device->data(), pinned->data(), pinned->size(), *stream));
  ASSERT_OK(CopyDeviceToHost(back->data(), device->data(), back->size(), *stream));
  ASSERT_OK(stream->Synchronize());
  EXPECT_EQ(std::memcmp(pinned->data(), back->data(), pinned->size()), 0);
}

// O_DIRECT staging needs 4 KiB-aligned buffers; cudaHostAlloc returned a 96 KiB buffer off a 4 KiB boundary
// on the H100 box (the SSD section files' second open failed so). Small odd sizes, many of them, each aligned
// and writable to its last byte.
TEST(HostMemoryTest, PinnedBuffersKeepTheAlignmentAskedFor) {
  SKIP_WITHOUT_GPU();
  std::vector<PinnedHostBuffer> buffers;
  for (int i = 0; i < 64; ++i) {
    const int64_t bytes = 512 * (1 + i % 7) + 24 * 1024 * (i % 5);
    auto buffer = PinnedHostBuffer::Allocate(bytes, "aligned staging", 4096);
    ASSERT_TRUE(buffer.ok()) << buffer.status();
    EXPECT_EQ(reinterpret_cast<uintptr_t>(buffer->data()) % 4096, 0u) << "buffer " << i << " of " << bytes;
    EXPECT_EQ(buffer->size(), bytes);
    std::memset(buffer->data(), 0xA5, static_cast<size_t>(bytes));
    buffers.push_back(std::move(*buffer));
  }
}

// Kernels read pinned host memory through the same pointer (the GPU path converts the CPU's attention rows
// this way, off the copy engines); ordinary host memory is not readable so.
TEST(HostMemoryTest, KernelsReadPinnedMemoryDirectly) {
  SKIP_WITHOUT_GPU();
  std::vector<float> pageable(16, 1.0f);
  EXPECT_FALSE(DeviceReadsHostDirectly(pageable.data()));
  constexpr int64_t kCount = 3 * 1000 * 1000 + 17;
  auto pinned = PinnedHostBuffer::Allocate(kCount * 4, "direct read");
  ASSERT_TRUE(pinned.ok()) << pinned.status();
  ASSERT_TRUE(DeviceReadsHostDirectly(pinned->data()));
  auto back = PinnedHostBuffer::Allocate(kCount * 2, "direct read result");
  ASSERT_TRUE(back.ok());
  for (int64_t i = 0; i < kCount; ++i)
    pinned->as<float>()[i] = static_cast<float>((i * 7919) % 1000) * 0.37f - 123.0f;
  DeviceArena arena(0);
  auto stream = Stream::Create();
  ASSERT_TRUE(stream.ok());
  auto converted = arena.Allocate(kCount * 2, "direct read bf16");
  ASSERT_TRUE(converted.ok());
  ASSERT_OK(ConvertF32ToBf16(pinned->as<float>(), kCount, converted->data(), *stream));
  ASSERT_OK(CopyDeviceToHost(back->data(), converted->data(), kCount * 2, *stream));
  ASSERT_OK(stream->Synchronize());
  std::vector<uint16_t> expected(kCount);
  io::ConvertF32ToBF16(pinned->as<float>(), expected.data(), kCount);
  EXPECT_EQ(std::memcmp(expected.data(), back->data(), kCount * 2), 0);
}

// gpu::CopyHostToDeviceByKernel (the grouped GEMM's pointer uploads, off the copy engines): every byte, for
// sizes and offsets that leave the 16-byte words ragged at either end.
TEST(HostMemoryTest, KernelCopiesFromPinnedMemoryAreExact) {
  SKIP_WITHOUT_GPU();
  constexpr int64_t kBytes = 1 << 20;
  auto pinned = PinnedHostBuffer::Allocate(kBytes, "kernel copy source");
  ASSERT_TRUE(pinned.ok()) << pinned.status();
  ASSERT_TRUE(DeviceReadsHostDirectly(pinned->data()));
  for (int64_t i = 0; i < kBytes; ++i) pinned->as<uint8_t>()[i] = static_cast<uint8_t>((i * 131 + 7) % 251);
  auto back = PinnedHostBuffer::Allocate(kBytes, "kernel copy result");
  ASSERT_TRUE(back.ok());
  DeviceArena arena(0);
  auto stream = Stream::Create();
  ASSERT_TRUE(stream.ok());
  auto device = arena.Allocate(kBytes, "kernel copy target");
  ASSERT_TRUE(device.ok());
  for (int64_t offset : {int64_t{0}, int64_t{8}, int64_t{5}}) {
    for (int64_t bytes : std::vector<int64_t>{0, 1, 15, 16, 17, 6144, 7 * 128 * 8, 100003, kBytes - 8}) {
      SCOPED_TRACE(testing::Message() << "offset " << offset << ", " << bytes << " bytes");
      ASSERT_OK(FillDeviceBytes(device->data(), 0xEE, kBytes, *stream));
      ASSERT_OK(CopyHostToDeviceByKernel(device->as<uint8_t>() + offset, pinned->as<uint8_t>() + offset,
                                         bytes, *stream));
      ASSERT_OK(CopyDeviceToHost(back->data(), device->data(), kBytes, *stream));
      ASSERT_OK(stream->Synchronize());
      const uint8_t* got = back->as<uint8_t>();
      EXPECT_EQ(std::memcmp(got + offset, pinned->as<uint8_t>() + offset, static_cast<size_t>(bytes)), 0);
      int64_t untouched = 0;
      for (int64_t i = 0; i < kBytes; ++i) untouched += (i < offset || i >= offset + bytes) && got[i] == 0xEE;
      EXPECT_EQ(untouched, kBytes - bytes);  // nothing written outside [offset, offset + bytes)
    }
  }
  EXPECT_FALSE(CopyHostToDeviceByKernel(device->data(), pinned->data(), -1, *stream).ok());
}

// More than 1 GiB, at an address that is not page-aligned: registered in two chunks, then usable for copies.
TEST(HostMemoryTest, RegistersInChunksOfAtMostOneGiB) {
  SKIP_WITHOUT_GPU();
  const int64_t bytes = kMaxHostRegisterChunkBytes + 64 * kMiB;
  std::vector<uint8_t> memory(bytes + 100);
  uint8_t* data = memory.data() + 100;
  for (int64_t i = 0; i < bytes; i += 4096) data[i] = static_cast<uint8_t>(i / 4096);
  auto registration = HostRegistration::Register(data, bytes, "test region", /*read_only=*/false);
  ASSERT_TRUE(registration.ok()) << registration.status();
  EXPECT_EQ(registration->bytes(), bytes);
  EXPECT_EQ(registration->chunk_count(), 2);
  DeviceArena arena(0);
  auto stream = Stream::Create();
  ASSERT_TRUE(stream.ok());
  auto device = arena.Allocate(bytes, "registered copy");
  ASSERT_TRUE(device.ok());
  // One copy may not span two registered chunks: copy span by span.
  std::vector<HostSpan> spans = registration->Split(data, bytes);
  ASSERT_EQ(spans.size(), 2u);
  EXPECT_EQ(spans[0].data, data);
  EXPECT_LE(spans[0].bytes, kMaxHostRegisterChunkBytes);
  EXPECT_EQ(spans[0].bytes + spans[1].bytes, bytes);
  EXPECT_TRUE(registration->Split(data - 1, 16).empty());  // Not inside the registration.
  for (const HostSpan& span : spans) {
    const int64_t offset = static_cast<const uint8_t*>(span.data) - data;
    ASSERT_OK(CopyHostToDevice(device->as<uint8_t>() + offset, span.data, span.bytes, *stream));
  }
  std::vector<uint8_t> tail(8 * kMiB);
  ASSERT_OK(CopyDeviceToHost(tail.data(), device->as<uint8_t>() + bytes - tail.size(), tail.size(), *stream));
  ASSERT_OK(stream->Synchronize());
  EXPECT_EQ(std::memcmp(tail.data(), data + bytes - tail.size(), tail.size()), 0);
  // Registering the same memory twice is refused with a message that names the memlock limit.
  auto again = HostRegistration::Register(data, 4096 * 4, "second registration", false);
  if (!again.ok()) {
    EXPECT_NE(again.status().message().find("second registration"), std::string::npos);
    EXPECT_NE(again.status().message().find("ulimit -l"), std::string::npos);
  }
}

TEST(StreamTest, EventsOrderTwoStreams) {
  SKIP_WITHOUT_GPU();
  DeviceArena arena(0);
  auto a = Stream::Create();
  auto b = Stream::Create(/*high_priority=*/true);
  ASSERT_TRUE(a.ok() && b.ok());
  auto done = Event::Create();
  ASSERT_TRUE(done.ok());
  auto buffer = arena.Allocate(64 * kMiB, "events");
  ASSERT_TRUE(buffer.ok());
  ASSERT_OK(FillDeviceBytes(buffer->data(), 0x5a, buffer->size(), *a));
  ASSERT_OK(done->Record(*a));
  ASSERT_OK(b->WaitFor(*done));
  std::vector<uint8_t> host(buffer->size());
  ASSERT_OK(CopyDeviceToHost(host.data(), buffer->data(), buffer->size(), *b));
  ASSERT_OK(b->Synchronize());
  auto complete = done->IsComplete();
  ASSERT_TRUE(complete.ok());
  EXPECT_TRUE(*complete);
  EXPECT_EQ(host.front(), 0x5a);
  EXPECT_EQ(host.back(), 0x5a);
}

}  // namespace
}  // namespace ringmoe::gpu
