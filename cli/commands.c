/* commands.c - the one description of tracsnap's command line (commands.h). */
#include "commands.h"

#include <string.h>

#include "cli.h"

/* Every command takes ENV or its mount point, and finds the store the same
 * way (cli_find_mount). */
#define CLI_STORE_HELP \
	"  --store DIR        the store (default: the running mount's, else\n" \
	"                     /var/lib/tracsnap/<ENV escaped>)\n"

static const cli_command cli_commands[] = {
	{ "mount", "[-f] [-d] [-s] [-o OPT[,OPT...]] ENV MOUNTPOINT",
	  "show ENV's snapshots at MOUNTPOINT (also mount -t fuse.tracsnap)",
	  "  -f                 stay in the foreground, log to stderr\n"
	  "  -d                 FUSE debugging (implies -f)\n"
	  "  -s                 one thread\n"
	  "  -o store=DIR       where the snapshots are kept (default /var/lib/tracsnap/<ENV escaped>)\n"
	  "  -o auto=FMT[:FMT...]\n"
	  "                     names made on first access, strftime formats (default %Y-%m-%d:%Y-%m-%dT%H)\n"
	  "  -o lock_timeout=S  how long a snapshot waits for Trac's write lock (default 30)\n"
	  "  -o no_database     copy the files only\n"
	  "  -o manage_group=GROUP\n"
	  "                     members may make, rename and remove snapshots\n"
	  "  -o keep=WORD:N[:WORD:N...]\n"
	  "                     prune after each snapshot (WORD: last, hourly, daily, weekly, monthly)\n"
	  "  -o allow_other, -o ro and the other FUSE options\n",
	  NULL },
	{ "snapshot", "[--store DIR] [--no-database] [--lock-timeout S] ENV [NAME]",
	  "take one snapshot into the store, as mkdir on the mount does",
	  CLI_STORE_HELP
	  "  --no-database      copy the files only\n"
	  "  --lock-timeout S   wait up to S seconds for Trac's write lock and the store (default 30)\n"
	  "  NAME               default: the local time as %Y-%m-%dT%H%M%S\n",
	  cli_snapshot },
	{ "list", "[--store DIR] [--json] ENV",
	  "list the snapshots, oldest first",
	  CLI_STORE_HELP
	  "  --json             one JSON array of objects (stable fields)\n",
	  cli_list },
	{ "verify", "[--store DIR] [--repair] ENV [NAME...]",
	  "compare snapshots (default: all) with their manifests",
	  CLI_STORE_HELP
	  "  --repair           rewrite damaged files from a copy whose hash matches\n",
	  cli_verify },
	{ "prune", "[--store DIR] [--keep-last N] [--keep-hourly N] [--keep-daily N] [--keep-weekly N] "
	  "[--keep-monthly N] [--lock-timeout S] [--dry-run] ENV",
	  "remove the snapshots no --keep-* rule keeps",
	  CLI_STORE_HELP
	  "  --keep-last N      the N newest\n"
	  "  --keep-hourly N    the newest of each of the last N hours with snapshots\n"
	  "  --keep-daily N, --keep-weekly N, --keep-monthly N\n"
	  "                     likewise per day, ISO week, month\n"
	  "  --lock-timeout S   wait up to S seconds for the store (default 30)\n"
	  "  --dry-run          say what would be removed, remove nothing\n",
	  cli_prune },
	{ "restore", "[--force] [--store DIR] [--lock-timeout S] SNAPSHOT ENV",
	  "put SNAPSHOT back in place of ENV (Trac stopped)",
	  "  SNAPSHOT           MOUNTPOINT/NAME, STORE/NAME/tree, or NAME in the store\n"
	  "  --force            restore even a damaged snapshot, or while ENV is in use\n"
	  CLI_STORE_HELP
	  "  --lock-timeout S   bound the waits of the snapshot kept before restoring (default 30)\n",
	  cli_restore },
	{ "status", "[--store DIR] ENV|MOUNTPOINT",
	  "the mount, its store, the snapshots, the stage and the last problems",
	  CLI_STORE_HELP,
	  cli_status },
	{ "hold", "[--store DIR] [--lock-timeout S] ENV NAME...",
	  "keep snapshots from prune, keep= and rmdir until released",
	  CLI_STORE_HELP
	  "  --lock-timeout S   wait up to S seconds for the store (default 30)\n",
	  cli_hold },
	{ "release", "[--store DIR] [--lock-timeout S] ENV NAME...",
	  "let held snapshots be removed again",
	  CLI_STORE_HELP
	  "  --lock-timeout S   wait up to S seconds for the store (default 30)\n",
	  cli_release },
	{ "help", "[COMMAND]",
	  "show the help of tracsnap or of one command",
	  "  COMMAND            one of the commands above, or mount\n",
	  cli_help },
};

#define CLI_NCOMMANDS (sizeof cli_commands / sizeof cli_commands[0])

const cli_command *cli_command_find(const char *name)
{
	for (size_t i = 0; i < CLI_NCOMMANDS; i++)
		if (!strcmp(cli_commands[i].name, name))
			return &cli_commands[i];
	return NULL;
}

/* Optimal string alignment distance (Damerau-Levenshtein without repeated
 * edits of one substring), as git's "did you mean" weighs a swap of two
 * letters like one edit.  Names longer than 31 bytes are far from all. */
static int cli_distance(const char *a, const char *b)
{
	enum { MAX = 32 };
	size_t n = strlen(a), m = strlen(b);
	int d[MAX + 1][MAX + 1];

	if (n > MAX || m > MAX)
		return MAX;
	for (size_t i = 0; i <= n; i++)
		d[i][0] = (int)i;
	for (size_t j = 0; j <= m; j++)
		d[0][j] = (int)j;
	for (size_t i = 1; i <= n; i++)
		for (size_t j = 1; j <= m; j++) {
			int cost = a[i - 1] != b[j - 1];
			int best = d[i - 1][j] + 1;
			if (d[i][j - 1] + 1 < best)
				best = d[i][j - 1] + 1;
			if (d[i - 1][j - 1] + cost < best)
				best = d[i - 1][j - 1] + cost;
			if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] &&
			    d[i - 2][j - 2] + 1 < best)
				best = d[i - 2][j - 2] + 1;
			d[i][j] = best;
		}
	return d[n][m];
}

const cli_command *cli_command_closest(const char *name)
{
	const cli_command *best = NULL;
	int best_d = 3;   /* at most 2 edits */

	if (!*name)
		return NULL;
	for (size_t i = 0; i < CLI_NCOMMANDS; i++) {
		int d = cli_distance(name, cli_commands[i].name);
		if (!strncmp(cli_commands[i].name, name, strlen(name)))
			d = 1;   /* an abbreviation: "snap", "ver" */
		if (d < best_d) {
			best = &cli_commands[i];
			best_d = d;
		}
	}
	return best;
}

/* "tracsnap NAME " then the synopsis, broken between its top-level words
 * (a bracketed group is never split) so that no line passes column 79. */
static void cli_synopsis_print(FILE *f, const char *lead, const cli_command *c)
{
	const char *word = c->name;
	int indent, col;

	if (!strcmp(c->name, "mount"))
		word = "";   /* the mount form has no command word */
	col = fprintf(f, "%stracsnap%s%s", lead, *word ? " " : "", word);
	indent = col + 1;
	for (const char *p = c->args; *p;) {
		int depth = 0;
		size_t len = 0;

		while (p[len] && (depth > 0 || p[len] != ' ')) {
			depth += (p[len] == '[') - (p[len] == ']');
			len++;
		}
		if (col + 1 + (int)len > 79 && col > indent) {
			fprintf(f, "\n%*s", indent - 1, "");
			col = indent - 1;
		}
		col += fprintf(f, " %.*s", (int)len, p);
		p += len;
		while (*p == ' ')
			p++;
	}
	fputc('\n', f);
}

void cli_usage_print(FILE *f, const char *name)
{
	const cli_command *c = cli_command_find(name);

	if (c)
		cli_synopsis_print(f, "usage: ", c);
}

void cli_help_overview(FILE *f)
{
	fputs("usage: tracsnap [-f] [-d] [-s] [-o OPT[,OPT...]] ENV MOUNTPOINT\n"
	      "       tracsnap COMMAND [OPTION...] ARG...\n"
	      "       tracsnap --version\n"
	      "\nConsistent hot snapshots of a Trac environment, shown as a FUSE filesystem.\n"
	      "\nCommands:\n", f);
	for (size_t i = 0; i < CLI_NCOMMANDS; i++)
		fprintf(f, "  %-10s %s\n", cli_commands[i].name, cli_commands[i].summary);
	fputs("\n'tracsnap help COMMAND' shows one command (mount: the mount form and its options);\n"
	      "tracsnap(1) has the whole manual.\n", f);
}

void cli_help_command(FILE *f, const cli_command *c)
{
	cli_synopsis_print(f, "usage: ", c);
	fprintf(f, "\n%c%s.\n\n%s", c->summary[0] - ('a' <= c->summary[0] && c->summary[0] <= 'z' ? 32 : 0),
	        c->summary + 1, c->help);
}

int cli_wants_help(int argc, char **argv)
{
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--"))
			return 0;
		if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h"))
			return 1;
	}
	return 0;
}
