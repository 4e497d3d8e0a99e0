#!/args.km xarg
