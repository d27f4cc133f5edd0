/* host.c - how a C application embeds fewshot: create a Lua 5.4 state, point package.path and
 * package.cpath at fewshot, run a script, report errors. The script gets the arguments after
 * its name in the global `arg`.
 *
 *     build/embed-host [--root DIR] [--states N] script.lua [args...]
 *
 * DIR (default ".") is where fewshot's lua/ and fewshot/core.so live: a source checkout after
 * `make`. An installed rock needs no --root: the default paths find it.
 *
 * --states N runs the script in N Lua states at once, each in a thread of its own (pthreads),
 * as a server would run one state per worker. Each state gets the globals EMBED_STATE (1..N)
 * and EMBED_STATES (N); what the script returns is printed after all threads have ended, one
 * line per state: "state K: v1 v2 ...". Nothing is shared between the states but the process:
 * each has its own default generator, GC pacing and thread count (README, "Embedding"). */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#define MAX_STATES 64

typedef struct {
    const char *root, *script;
    int argc;
    char **argv; /* the script's arguments */
    int index, count; /* EMBED_STATE, EMBED_STATES; count 0: run as a lone host */
    int status;
    char result[1024]; /* returned values, or the error message */
} job;

static int traceback(lua_State *L)
{
    luaL_traceback(L, L, lua_tostring(L, 1), 1);
    return 1;
}

static void prepend_paths(lua_State *L, const char *root)
{
    lua_getglobal(L, "package");
    lua_pushfstring(L, "%s/lua/?.lua;%s/lua/?/init.lua;", root, root);
    lua_getfield(L, -2, "path");
    lua_concat(L, 2);
    lua_setfield(L, -2, "path");
    lua_pushfstring(L, "%s/?.so;", root);
    lua_getfield(L, -2, "cpath");
    lua_concat(L, 2);
    lua_setfield(L, -2, "cpath");
    lua_pop(L, 1);
}

/* Copies the values from stack index `first` to the top into j->result, space-separated. */
static void keep_results(lua_State *L, int first, job *j)
{
    size_t len = 0;
    j->result[0] = '\0';
    for (int i = first; i <= lua_gettop(L) && len + 1 < sizeof j->result; i++) {
        const char *s = luaL_tolstring(L, i, NULL);
        int n = snprintf(j->result + len, sizeof j->result - len, "%s%s", i > first ? " " : "", s);
        lua_pop(L, 1);
        if (n < 0)
            break;
        len += (size_t)n;
    }
}

/* One Lua state from creation to close: the whole life of a job. */
static void *run_job(void *arg)
{
    job *j = arg;
    lua_State *L = luaL_newstate();
    if (!L) {
        j->status = 1;
        snprintf(j->result, sizeof j->result, "cannot create a Lua state");
        return NULL;
    }
    luaL_openlibs(L);
    if (j->root)
        prepend_paths(L, j->root);
    lua_createtable(L, j->argc, 1);
    lua_pushstring(L, j->script);
    lua_rawseti(L, -2, 0);
    for (int i = 0; i < j->argc; i++) {
        lua_pushstring(L, j->argv[i]);
        lua_rawseti(L, -2, i + 1);
    }
    lua_setglobal(L, "arg");
    if (j->count > 0) {
        lua_pushinteger(L, j->index);
        lua_setglobal(L, "EMBED_STATE");
        lua_pushinteger(L, j->count);
        lua_setglobal(L, "EMBED_STATES");
    }

    lua_pushcfunction(L, traceback);
    int base = lua_gettop(L);
    int status = luaL_loadfile(L, j->script);
    if (status == LUA_OK)
        status = lua_pcall(L, 0, LUA_MULTRET, base);
    if (status != LUA_OK)
        snprintf(j->result, sizeof j->result, "%s", lua_tostring(L, -1));
    else
        keep_results(L, base + 1, j);
    j->status = status != LUA_OK;
    lua_close(L);
    return NULL;
}

int main(int argc, char **argv)
{
    const char *root = NULL;
    int first = 1, states = 0;
    while (first + 1 < argc && argv[first][0] == '-') {
        if (strcmp(argv[first], "--root") == 0)
            root = argv[first + 1];
        else if (strcmp(argv[first], "--states") == 0) {
            char *end;
            long n = strtol(argv[first + 1], &end, 10);
            if (*end || n < 1 || n > MAX_STATES) {
                fprintf(stderr, "embed-host: --states takes a count from 1 to %d, got '%s'\n",
                        MAX_STATES, argv[first + 1]);
                return 2;
            }
            states = (int)n;
        } else
            break;
        first += 2;
    }
    if (first >= argc) {
        fprintf(stderr, "usage: %s [--root DIR] [--states N] script.lua [args...]\n", argv[0]);
        return 2;
    }
    job proto = {.root = root, .script = argv[first], .argc = argc - first - 1,
                 .argv = argv + first + 1};
    if (states == 0) { /* the plain host: one state on the main thread */
        job j = proto;
        run_job(&j);
        if (j.status)
            fprintf(stderr, "embed-host: %s\n", j.result);
        else if (j.result[0])
            printf("%s\n", j.result);
        return j.status;
    }

    static job jobs[MAX_STATES];
    pthread_t threads[MAX_STATES];
    int started = 0, failed = 0;
    for (int k = 0; k < states; k++) {
        jobs[k] = proto;
        jobs[k].index = k + 1;
        jobs[k].count = states;
        int rc = pthread_create(&threads[k], NULL, run_job, &jobs[k]);
        if (rc != 0) {
            fprintf(stderr, "embed-host: cannot start thread %d: %s\n", k + 1, strerror(rc));
            failed = 1;
            break;
        }
        started++;
    }
    for (int k = 0; k < started; k++)
        pthread_join(threads[k], NULL);
    for (int k = 0; k < started; k++) {
        if (jobs[k].status) {
            fprintf(stderr, "embed-host: state %d: %s\n", k + 1, jobs[k].result);
            failed = 1;
        } else
            printf("state %d: %s\n", k + 1, jobs[k].result);
    }
    return failed;
}
