// DatagramBatch.cs — caller-owned, reusable receive buffers for batch receives: one pinned
// byte[] cut into `Slots` slots of `SlotSize` bytes plus the native wtd_datagram_buffer array
// describing them. A batch receive fills the first Count slots; nothing is allocated per call.
using System;
using System.Runtime.InteropServices;

namespace Wtd
{
    /// <summary>Reusable buffers for ReceiveBatch: allocate once, receive into it every frame.
    /// Not thread-safe: one receive at a time per batch.</summary>
    public sealed unsafe class DatagramBatch : IDisposable
    {
        private readonly byte[] storage;
        private GCHandle pin;
        private IntPtr native; // NativeDatagramBuffer[Slots]
        private int count;

        /// <summary>Creates `slots` buffers of `slotSize` bytes each (slotSize should be at least
        /// the session's MaxDatagramSize, else a larger datagram stops the batch).</summary>
        public DatagramBatch(int slots, int slotSize)
        {
            if (slots <= 0) throw new ArgumentOutOfRangeException("slots");
            if (slotSize <= 0) throw new ArgumentOutOfRangeException("slotSize");
            Slots = slots;
            SlotSize = slotSize;
            storage = new byte[checked(slots * slotSize)];
            pin = GCHandle.Alloc(storage, GCHandleType.Pinned);
            native = Marshal.AllocHGlobal(sizeof(NativeDatagramBuffer) * slots);
            NativeDatagramBuffer* b = (NativeDatagramBuffer*)native;
            IntPtr basePtr = pin.AddrOfPinnedObject();
            for (int i = 0; i < slots; i++)
            {
                b[i].Data = basePtr + i * slotSize;
                b[i].Capacity = (UIntPtr)slotSize;
                b[i].Len = UIntPtr.Zero;
            }
        }

        /// <summary>Number of slots.</summary>
        public int Slots { get; private set; }

        /// <summary>Capacity of each slot in bytes.</summary>
        public int SlotSize { get; private set; }

        /// <summary>Datagrams the last receive filled (slots 0..Count-1).</summary>
        public int Count { get { return count; } }

        /// <summary>The backing array: datagram i is at Offset(i), Length(i) bytes.</summary>
        public byte[] Buffer { get { return storage; } }

        /// <summary>Offset of slot i in Buffer.</summary>
        public int Offset(int i)
        {
            CheckIndex(i);
            return i * SlotSize;
        }

        /// <summary>Length of datagram i.</summary>
        public int Length(int i)
        {
            CheckIndex(i);
            return (int)((NativeDatagramBuffer*)native)[i].Len;
        }

        /// <summary>Datagram i as an ArraySegment over Buffer (no copy, no allocation).</summary>
        public ArraySegment<byte> this[int i]
        {
            get { return new ArraySegment<byte>(storage, Offset(i), Length(i)); }
        }

#if !WTD_NO_SPAN
        /// <summary>Datagram i as a span over Buffer (no copy).</summary>
        public ReadOnlySpan<byte> AsSpan(int i)
        {
            return new ReadOnlySpan<byte>(storage, Offset(i), Length(i));
        }
#endif

        private void CheckIndex(int i)
        {
            if (i < 0 || i >= count) throw new ArgumentOutOfRangeException("i", "index outside the received datagrams");
        }

        /// <summary>The native array, for the receive calls (throws after Dispose).</summary>
        internal NativeDatagramBuffer* Native
        {
            get
            {
                if (native == IntPtr.Zero) throw new ObjectDisposedException("DatagramBatch");
                return (NativeDatagramBuffer*)native;
            }
        }

        internal void SetCount(int n) { count = n; }

        /// <summary>Frees the pinned buffer and the native array.</summary>
        public void Dispose()
        {
            if (native == IntPtr.Zero) return;
            Marshal.FreeHGlobal(native);
            native = IntPtr.Zero;
            if (pin.IsAllocated) pin.Free();
            count = 0;
        }
    }
}
