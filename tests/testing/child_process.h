// Starting a program under test (the built ringmoe binary) as a child the test can signal and wait for: a
// minimal environment, so that the user's settings do not leak in, and its stderr in a file. Threading: call
// from the test's thread.
#pragma once

#include <fcntl.h>
#include <unistd.h>

#include <cstdlib>
#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace ringmoe::testing {

// Starts argv[0] with `argv`; environment: XDG_CACHE_HOME=cache_dir, PATH=/usr/bin:/bin, and HOME and
// LD_LIBRARY_PATH inherited (the loader's path: where dependencies live outside the system's, as on the GPU
// machine). The child's stderr goes to `stderr_path`. Returns its pid (> 0, else a test failure).
inline pid_t StartChild(std::vector<std::string> argv, const std::string& cache_dir,
                        const std::string& stderr_path) {
  std::vector<char*> c_argv;
  for (std::string& argument : argv) c_argv.push_back(argument.data());
  c_argv.push_back(nullptr);
  std::vector<std::string> environment = {"XDG_CACHE_HOME=" + cache_dir, "PATH=/usr/bin:/bin"};
  for (const char* inherited : {"HOME", "LD_LIBRARY_PATH"})
    if (const char* value = std::getenv(inherited))
      environment.push_back(std::string(inherited) + "=" + value);
  std::vector<char*> c_environment;
  for (std::string& entry : environment) c_environment.push_back(entry.data());
  c_environment.push_back(nullptr);
  const pid_t pid = ::fork();
  if (pid == 0) {
    const int fd = ::open(stderr_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd >= 0) ::dup2(fd, 2);
    ::execve(c_argv[0], c_argv.data(), c_environment.data());
    ::_exit(127);
  }
  EXPECT_GT(pid, 0);
  return pid;
}

}  // namespace ringmoe::testing
