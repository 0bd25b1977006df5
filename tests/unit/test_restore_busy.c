/* test_restore_busy.c - ts_restore_users: a process holding a file of ENV
 * open makes ENV busy, a tracsnap of root's (this very executable: a
 * daemon whose stager reads ENV) does not, and neither does a process
 * holding only a directory open. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "restore/restore.h"
#include "tutil.h"

/* A child that opens path (flags) and waits for the parent's word on a
 * pipe.  exec_sleep: the child holds the descriptor across exec of
 * sleep(1), so that it is another executable. */
static pid_t holder(const char *path, int flags, bool exec_sleep, int *release)
{
	int ready[2], go[2];
	char c;
	pid_t pid;

	assert_int_equal(pipe(ready), 0);
	assert_int_equal(pipe(go), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		int fd = open(path, flags);
		close(ready[0]);
		close(go[1]);
		if (fd < 0)
			_exit(2);
		if (exec_sleep) {
			/* The open descriptor stays across exec; sleep's
			 * stdin is the pipe the parent closes to end it. */
			dup2(go[0], 0);
			if (write(ready[1], "r", 1) != 1)
				_exit(3);
			execlp("sleep", "sleep", "60", (char *)NULL);
			_exit(4);
		}
		if (write(ready[1], "r", 1) != 1 || read(go[0], &c, 1) < 0)
			_exit(3);
		_exit(0);
	}
	close(ready[1]);
	close(go[0]);
	assert_int_equal(read(ready[0], &c, 1), 1);
	close(ready[0]);
	/* Until sleep(1) has replaced the child (at most 10 s). */
	for (int i = 0; exec_sleep && i < 1000; i++) {
		char procf[64], comm[32] = "";
		FILE *f;
		snprintf(procf, sizeof procf, "/proc/%ld/comm", (long)pid);
		f = fopen(procf, "re");
		if (f) {
			if (!fgets(comm, sizeof comm, f))
				comm[0] = '\0';
			fclose(f);
		}
		if (!strcmp(comm, "sleep\n"))
			break;
		usleep(10 * 1000);
	}
	*release = go[1];
	return pid;
}

static void reap(pid_t pid, int release, bool kill_it)
{
	int st;

	if (kill_it)
		kill(pid, SIGKILL);
	close(release);
	assert_int_equal(waitpid(pid, &st, 0), pid);
}

static void test_busy_other_program_not_own(void **state)
{
	(void)state;
	char top[PATH_MAX], file[PATH_MAX + 16], who[256];
	int release;
	pid_t pid;

	tu_tmpdir("busy", top);
	tu_fmt(file, sizeof file, "%s/trac.log", top);
	tu_put_file(file, "log\n");

	/* Another executable (sleep) holding ENV's file: busy, named. */
	pid = holder(file, O_RDONLY, true, &release);
	assert_int_equal(ts_restore_users(top, NULL, who, sizeof who), 1);
	assert_non_null(strstr(who, "(sleep)"));
	reap(pid, release, true);

	/* This executable, run by root, holding the same file: a tracsnap
	 * reading ENV, which does not count. */
	if (geteuid() == 0) {
		pid = holder(file, O_RDONLY, false, &release);
		assert_int_equal(ts_restore_users(top, NULL, who, sizeof who), 0);
		assert_string_equal(who, "");
		reap(pid, release, false);
	}

	/* A directory held open survives the swap: not busy. */
	pid = holder(top, O_RDONLY | O_DIRECTORY, true, &release);
	assert_int_equal(ts_restore_users(top, NULL, who, sizeof who), 0);
	reap(pid, release, true);
	tu_rm_rf(top);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_busy_other_program_not_own),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
