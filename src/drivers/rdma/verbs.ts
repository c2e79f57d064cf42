// Models: the constants of include/rdma/ib_verbs.h a driver and a consumer of verbs share: the MR
// access flags (enum ib_access_flags, values from include/uapi/rdma/ib_user_ioctl_verbs.h:
// enum ib_uverbs_access_flags), ib_access_writable(), ib_check_mr_access(), and the work completion
// statuses (enum ib_wc_status) with ib_wc_status_msg()'s strings (drivers/infiniband/core/verbs.c).

import { err, ok, type Result } from '../../base/index.ts';

export const IB_ACCESS_LOCAL_WRITE = 1 << 0;
export const IB_ACCESS_REMOTE_WRITE = 1 << 1;
export const IB_ACCESS_REMOTE_READ = 1 << 2;
export const IB_ACCESS_REMOTE_ATOMIC = 1 << 3;
export const IB_ACCESS_MW_BIND = 1 << 4;
export const IB_ZERO_BASED = 1 << 5;
export const IB_ACCESS_ON_DEMAND = 1 << 6;
export const IB_ACCESS_HUGETLB = 1 << 7;
export const IB_ACCESS_FLUSH_GLOBAL = 1 << 8;
export const IB_ACCESS_FLUSH_PERSISTENT = 1 << 9;
/** IB_UVERBS_ACCESS_OPTIONAL_FIRST: the first optional flag. */
export const IB_ACCESS_RELAXED_ORDERING = 1 << 20;
/** IB_UVERBS_ACCESS_OPTIONAL_RANGE: bits 20..29. */
export const IB_ACCESS_OPTIONAL = ((1 << 29) * 2 - 1) & ~((1 << 20) - 1);
/** IB_ACCESS_SUPPORTED = ((IB_ACCESS_FLUSH_PERSISTENT << 1) - 1) | IB_ACCESS_OPTIONAL. */
export const IB_ACCESS_SUPPORTED = ((IB_ACCESS_FLUSH_PERSISTENT << 1) - 1) | IB_ACCESS_OPTIONAL;

/** ib_access_writable(): the MR's memory is written (local or remote write, atomics, MW bind). */
export function ibAccessWritable(access: number): boolean {
  return (access & (IB_ACCESS_LOCAL_WRITE | IB_ACCESS_REMOTE_WRITE | IB_ACCESS_REMOTE_ATOMIC | IB_ACCESS_MW_BIND)) !== 0;
}

/**
 * ib_check_mr_access(): remote write or atomic needs local write (EINVAL); flags outside
 * IB_ACCESS_SUPPORTED are EINVAL; on-demand paging on a device without it is EOPNOTSUPP; the flush
 * flags are EOPNOTSUPP (the model's NIC has neither IB_DEVICE_FLUSH_GLOBAL nor _PERSISTENT).
 */
export function ibCheckMrAccess(access: number, odpCapable: boolean): Result<void> {
  if ((access & (IB_ACCESS_REMOTE_ATOMIC | IB_ACCESS_REMOTE_WRITE)) !== 0 && (access & IB_ACCESS_LOCAL_WRITE) === 0) {
    return err('EINVAL', `access 0x${access.toString(16)}: remote write or atomic without IB_ACCESS_LOCAL_WRITE`);
  }
  if ((access & ~IB_ACCESS_SUPPORTED) !== 0) return err('EINVAL', `access 0x${access.toString(16)} has unsupported bits 0x${(access & ~IB_ACCESS_SUPPORTED).toString(16)}`);
  if ((access & IB_ACCESS_ON_DEMAND) !== 0 && !odpCapable) return err('EOPNOTSUPP', 'IB_ACCESS_ON_DEMAND on a device without on-demand paging');
  if ((access & (IB_ACCESS_FLUSH_GLOBAL | IB_ACCESS_FLUSH_PERSISTENT)) !== 0) return err('EOPNOTSUPP', 'IB_ACCESS_FLUSH_* on a device without flush support');
  return ok(undefined);
}

/** enum ib_wc_status, in the kernel's order (the numeric value is the index). */
export const IB_WC_STATUS_NAMES = [
  'IB_WC_SUCCESS', 'IB_WC_LOC_LEN_ERR', 'IB_WC_LOC_QP_OP_ERR', 'IB_WC_LOC_EEC_OP_ERR', 'IB_WC_LOC_PROT_ERR',
  'IB_WC_WR_FLUSH_ERR', 'IB_WC_MW_BIND_ERR', 'IB_WC_BAD_RESP_ERR', 'IB_WC_LOC_ACCESS_ERR', 'IB_WC_REM_INV_REQ_ERR',
  'IB_WC_REM_ACCESS_ERR', 'IB_WC_REM_OP_ERR', 'IB_WC_RETRY_EXC_ERR', 'IB_WC_RNR_RETRY_EXC_ERR', 'IB_WC_LOC_RDD_VIOL_ERR',
  'IB_WC_REM_INV_RD_REQ_ERR', 'IB_WC_REM_ABORT_ERR', 'IB_WC_INV_EECN_ERR', 'IB_WC_INV_EEC_STATE_ERR', 'IB_WC_FATAL_ERR',
  'IB_WC_RESP_TIMEOUT_ERR', 'IB_WC_GENERAL_ERR',
] as const;
export type IbWcStatus = (typeof IB_WC_STATUS_NAMES)[number];

export const IB_WC_SUCCESS: IbWcStatus = 'IB_WC_SUCCESS';
export const IB_WC_LOC_LEN_ERR: IbWcStatus = 'IB_WC_LOC_LEN_ERR';
export const IB_WC_LOC_QP_OP_ERR: IbWcStatus = 'IB_WC_LOC_QP_OP_ERR';
export const IB_WC_LOC_PROT_ERR: IbWcStatus = 'IB_WC_LOC_PROT_ERR';
export const IB_WC_WR_FLUSH_ERR: IbWcStatus = 'IB_WC_WR_FLUSH_ERR';
export const IB_WC_LOC_ACCESS_ERR: IbWcStatus = 'IB_WC_LOC_ACCESS_ERR';
export const IB_WC_REM_INV_REQ_ERR: IbWcStatus = 'IB_WC_REM_INV_REQ_ERR';
export const IB_WC_REM_ACCESS_ERR: IbWcStatus = 'IB_WC_REM_ACCESS_ERR';
export const IB_WC_REM_OP_ERR: IbWcStatus = 'IB_WC_REM_OP_ERR';
export const IB_WC_RNR_RETRY_EXC_ERR: IbWcStatus = 'IB_WC_RNR_RETRY_EXC_ERR';
export const IB_WC_FATAL_ERR: IbWcStatus = 'IB_WC_FATAL_ERR';
export const IB_WC_GENERAL_ERR: IbWcStatus = 'IB_WC_GENERAL_ERR';

/** ib_wc_status_msg() of drivers/infiniband/core/verbs.c. */
const WC_MSG: Readonly<Record<IbWcStatus, string>> = {
  IB_WC_SUCCESS: 'success', IB_WC_LOC_LEN_ERR: 'local length error', IB_WC_LOC_QP_OP_ERR: 'local QP operation error',
  IB_WC_LOC_EEC_OP_ERR: 'local EE context operation error', IB_WC_LOC_PROT_ERR: 'local protection error',
  IB_WC_WR_FLUSH_ERR: 'WR flushed', IB_WC_MW_BIND_ERR: 'memory bind operation error', IB_WC_BAD_RESP_ERR: 'bad response error',
  IB_WC_LOC_ACCESS_ERR: 'local access error', IB_WC_REM_INV_REQ_ERR: 'remote invalid request error',
  IB_WC_REM_ACCESS_ERR: 'remote access error', IB_WC_REM_OP_ERR: 'remote operation error',
  IB_WC_RETRY_EXC_ERR: 'transport retry counter exceeded', IB_WC_RNR_RETRY_EXC_ERR: 'RNR retry counter exceeded',
  IB_WC_LOC_RDD_VIOL_ERR: 'local RDD violation error', IB_WC_REM_INV_RD_REQ_ERR: 'remote invalid RD request',
  IB_WC_REM_ABORT_ERR: 'operation aborted', IB_WC_INV_EECN_ERR: 'invalid EE context number',
  IB_WC_INV_EEC_STATE_ERR: 'invalid EE context state', IB_WC_FATAL_ERR: 'fatal error',
  IB_WC_RESP_TIMEOUT_ERR: 'response timeout error', IB_WC_GENERAL_ERR: 'general error',
};

/** ib_wc_status_msg(). */
export function ibWcStatusMsg(status: IbWcStatus): string {
  return WC_MSG[status] ?? 'unrecognized status';
}
