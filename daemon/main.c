#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "mailkeep/conf.h"
#include "mailkeep/log.h"

static void
usage(FILE *fp)
{
	fprintf(fp,
	    "usage: mailkeepd [-c FILE] [-f] [-n] [--store DIR] "
	    "[--state DIR]\n");
}

int
main(int argc, char **argv)
{
	static const struct option longopts[] = {
	    {"config", required_argument, NULL, 'c'},
	    {"store", required_argument, NULL, 'S'},
	    {"state", required_argument, NULL, 'T'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	struct mk_conf_args args;
	struct mk_conf *conf = NULL;
	struct mk_err err;
	int ch, check = 0;

	mk_log_init("mailkeepd", MK_LOG_INFO);
	memset(&args, 0, sizeof(args));
	while ((ch = getopt_long(argc, argv, "c:fnh", longopts, NULL)) != -1) {
		switch (ch) {
		case 'c':
			args.config = optarg;
			break;
		case 'n':
			check = 1;
			break;
		case 'f':
			break;
		case 'S':
			args.store = optarg;
			break;
		case 'T':
			args.state = optarg;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind != argc) {
		usage(stderr);
		return 2;
	}
	if (mk_conf_setup(&args, &conf, &err) < 0) {
		mk_log_error("conf", "%s", err.msg);
		return 1;
	}
	if (check)
		printf("configuration OK\n");
	mk_conf_free(&conf);
	return 0;
}
