/* manifest_stat.c - a manifest entry against a struct stat (manifest_stat.h). */
#include "store/manifest_stat.h"

#include <stdint.h>
#include <string.h>

static bool ms_same_time(const struct timespec *a, const struct timespec *b)
{
	return a->tv_sec == b->tv_sec && a->tv_nsec == b->tv_nsec;
}

char ts_manifest_type_of(mode_t mode)
{
	return S_ISDIR(mode) ? 'd' : S_ISREG(mode) ? 'f' : S_ISLNK(mode) ? 'l' : 0;
}

void ts_manifest_entry_set_meta(ts_manifest_entry *me, const struct stat *st)
{
	me->mode = st->st_mode & 07777;
	me->uid = st->st_uid;
	me->gid = st->st_gid;
	me->size = me->type == 'd' ? 0 : (uint64_t)st->st_size;
	me->mtime = st->st_mtim;
}

void ts_manifest_entry_set_source(ts_manifest_entry *me, const struct stat *st)
{
	me->src_ino = st->st_ino;
	me->src_ctime = st->st_ctim;
}

void ts_manifest_entry_set_store(ts_manifest_entry *me, const struct stat *st)
{
	if (me->type != 'f')
		return;
	me->store_ino = st->st_ino;
	me->store_ctime = st->st_ctim;
}

void ts_manifest_entry_to_stat(const ts_manifest_entry *me, struct stat *st)
{
	memset(st, 0, sizeof *st);
	st->st_ino = (ino_t)me->src_ino;
	st->st_mode = (me->type == 'd' ? S_IFDIR : me->type == 'l' ? S_IFLNK : S_IFREG) | me->mode;
	st->st_uid = me->uid;
	st->st_gid = me->gid;
	st->st_size = (off_t)me->size;
	st->st_mtim = me->mtime;
	st->st_ctim = me->src_ctime;
}

unsigned ts_manifest_entry_diff(const ts_manifest_entry *me, const struct stat *st)
{
	unsigned d = 0;

	if (ts_manifest_type_of(st->st_mode) != me->type)
		d |= TS_MDIFF_TYPE;
	if (me->type != 'l' && (st->st_mode & 07777) != me->mode)
		d |= TS_MDIFF_MODE;
	if (st->st_uid != me->uid || st->st_gid != me->gid)
		d |= TS_MDIFF_OWNER;
	if (me->type != 'd' && (uint64_t)st->st_size != me->size)
		d |= TS_MDIFF_SIZE;
	if (!ms_same_time(&st->st_mtim, &me->mtime))
		d |= st->st_mtim.tv_sec == me->mtime.tv_sec && st->st_mtim.tv_nsec == 0 ?
		     TS_MDIFF_MTIME_SEC : TS_MDIFF_MTIME;
	return d;
}

bool ts_manifest_copy_matches(const ts_manifest_entry *me, const struct stat *st, bool owners)
{
	unsigned need = me->type == 'l' ? TS_MDIFF_TYPE | TS_MDIFF_SIZE
	                : TS_MDIFF_TYPE | TS_MDIFF_SIZE | TS_MDIFF_MODE | TS_MDIFF_MTIME |
	                  TS_MDIFF_MTIME_SEC | (owners ? TS_MDIFF_OWNER : 0);
	return !(ts_manifest_entry_diff(me, st) & need);
}

bool ts_manifest_same_source(const ts_manifest_entry *me, const struct stat *st)
{
	unsigned need = me->type == 'd' ? TS_MDIFF_TYPE | TS_MDIFF_MTIME | TS_MDIFF_MTIME_SEC
	                : TS_MDIFF_TYPE | TS_MDIFF_MTIME | TS_MDIFF_MTIME_SEC | TS_MDIFF_SIZE |
	                  TS_MDIFF_MODE | TS_MDIFF_OWNER;
	return me->src_ino == (uint64_t)st->st_ino && ms_same_time(&me->src_ctime, &st->st_ctim) &&
	       !(ts_manifest_entry_diff(me, st) & need);
}
