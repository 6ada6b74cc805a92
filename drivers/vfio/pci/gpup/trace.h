/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Tracepoints of gpup_vfio_pci: state machine arcs and provider calls.
 *
 * Copyright (C) 2026 The gpup-vfio authors
 */
#undef TRACE_SYSTEM
#define TRACE_SYSTEM gpup_vfio

#if !defined(GPUP_VFIO_TRACE_H) || defined(TRACE_HEADER_MULTI_READ)
#define GPUP_VFIO_TRACE_H

#include <linux/tracepoint.h>

TRACE_EVENT(gpup_vfio_arc,
	    TP_PROTO(unsigned int vf, int from, int to, int ret),
	    TP_ARGS(vf, from, to, ret),
	    TP_STRUCT__entry(__field(unsigned int, vf)
			     __field(int, from)
			     __field(int, to)
			     __field(int, ret)),
	    TP_fast_assign(__entry->vf = vf;
			   __entry->from = from;
			   __entry->to = to;
			   __entry->ret = ret;),
	    TP_printk("vf=%u %d->%d ret=%d", __entry->vf, __entry->from,
		      __entry->to, __entry->ret)
);

TRACE_EVENT(gpup_vfio_op,
	    TP_PROTO(unsigned int vf, const char *op, u64 arg, long ret),
	    TP_ARGS(vf, op, arg, ret),
	    TP_STRUCT__entry(__field(unsigned int, vf)
			     __string(op, op)
			     __field(u64, arg)
			     __field(long, ret)),
	    TP_fast_assign(__entry->vf = vf;
			   __assign_str(op);
			   __entry->arg = arg;
			   __entry->ret = ret;),
	    TP_printk("vf=%u %s(%llu) ret=%ld", __entry->vf, __get_str(op),
		      __entry->arg, __entry->ret)
);

#endif /* GPUP_VFIO_TRACE_H */

#undef TRACE_INCLUDE_PATH
#define TRACE_INCLUDE_PATH .
#undef TRACE_INCLUDE_FILE
#define TRACE_INCLUDE_FILE trace
#include <trace/define_trace.h>
