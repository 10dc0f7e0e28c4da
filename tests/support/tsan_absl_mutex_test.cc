// Checks tests/support/tsan_absl_mutex.cc under ThreadSanitizer (make test-tsan builds and runs
// it; it is built only with PAGEOWNER_TSAN). Every test here orders two threads with absl::Mutex,
// absl::CondVar or absl::Notification only: without the annotations TSan reports each of them as
// a data race (halt_on_error fails the run), with them it reports nothing. That TSan still
// reports a counter written under two different mutexes was checked by hand (BENCHMARKS.md).
#include <thread>

#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"

namespace pageowner {
namespace {

struct Guarded {
  absl::Mutex mu;
  absl::CondVar cv;
  int value ABSL_GUARDED_BY(mu) = 0;
};

TEST(TsanAbslMutexTest, LockAndUnlockOrderTheThreads) {
  Guarded g;
  std::thread t([&] {
    for (int i = 0; i < 1000; ++i) {
      absl::MutexLock lock(&g.mu);
      ++g.value;
    }
  });
  for (int i = 0; i < 1000; ++i) {
    absl::MutexLock lock(&g.mu);
    ++g.value;
  }
  t.join();
  absl::ReaderMutexLock lock(&g.mu);
  EXPECT_EQ(g.value, 2000);
}

TEST(TsanAbslMutexTest, ReaderLocksAreOrderedWithTheWriter) {
  Guarded g;
  std::thread writer([&] {
    for (int i = 0; i < 1000; ++i) {
      absl::WriterMutexLock lock(&g.mu);
      ++g.value;
    }
  });
  int last = 0;
  for (int i = 0; i < 1000; ++i) {
    absl::ReaderMutexLock lock(&g.mu);
    EXPECT_GE(g.value, last);
    last = g.value;
  }
  writer.join();
}

TEST(TsanAbslMutexTest, AwaitSeesWhatTheOtherThreadWrote) {
  Guarded g;
  int payload = 0;  // written before the guarded flag, read after Await returns
  std::thread t([&] {
    payload = 42;
    absl::MutexLock lock(&g.mu);
    g.value = 1;
  });
  {
    absl::MutexLock lock(&g.mu);
    auto set = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(g.mu) { return g.value == 1; };
    EXPECT_TRUE(g.mu.AwaitWithTimeout(absl::Condition(&set), absl::Seconds(30)));
  }
  EXPECT_EQ(payload, 42);
  t.join();
}

TEST(TsanAbslMutexTest, CondVarWaitSeesWhatTheSignalerWrote) {
  Guarded g;
  int payload = 0;
  std::thread t([&] {
    payload = 5;
    absl::MutexLock lock(&g.mu);
    g.value = 1;
    g.cv.Signal();
  });
  {
    absl::MutexLock lock(&g.mu);
    while (g.value == 0) g.cv.Wait(&g.mu);
  }
  EXPECT_EQ(payload, 5);
  t.join();
}

TEST(TsanAbslMutexTest, NotificationOrdersNotifyBeforeTheWait) {
  absl::Notification done;
  int payload = 0;
  std::thread t([&] {
    payload = 3;
    done.Notify();
  });
  done.WaitForNotification();
  EXPECT_EQ(payload, 3);
  t.join();
}

}  // namespace
}  // namespace pageowner
