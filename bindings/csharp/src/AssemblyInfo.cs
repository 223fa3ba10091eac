// AssemblyInfo.cs — the test program checks the internal native structs' layouts.
using System.Runtime.CompilerServices;

[assembly: InternalsVisibleTo("WtdTests")]
